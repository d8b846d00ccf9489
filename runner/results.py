"""The results artifacts: their names, how cv_results is written and read back.

Called by the reducer (write) and by ``kubegrid results``, the report and the
tests (read). ``cv_results.parquet`` keeps every value exactly: scores and
times as float64, ranks as int32, and parameter values as JSON text so that
an int stays an int and a YAML ``null`` stays ``None``; a parameter a
candidate does not have (list-of-grids searches) is a null cell, which
:func:`read_cv_results` turns back into a masked entry, as in scikit-learn.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

# pandas imports Arrow's Parquet module at the first to_parquet; a local run
# imports this module while its workers fit, so that cost is paid then.
import pyarrow.parquet

from kubegrid.storage import Store

CV_RESULTS_PARQUET = "cv_results.parquet"
CV_RESULTS_CSV = "cv_results.csv"
SUMMARY = "summary.json"
BEST_ESTIMATOR = "best_estimator.joblib"
REPORT = "report.html"
HOLDOUT = "holdout.json"
TUNED_ESTIMATOR = "tuned_estimator.joblib"


# Figures the report may draw; which ones depends on the search.
HEATMAP_PNG = "report-heatmap.png"
SCORES_PNG = "report-scores-by-param.png"
FIT_TIME_PNG = "report-fit-time.png"
CONFUSION_PNG = "report-confusion.png"
CURVES_PNG = "report-curves.png"
REPORT_IMAGES = (HEATMAP_PNG, SCORES_PNG, FIT_TIME_PNG, CONFUSION_PNG, CURVES_PNG)


def replaced_artifacts() -> list[str]:
    """Every artifact but the summary: what a reduce writes anew or drops."""
    return [
        CV_RESULTS_PARQUET,
        CV_RESULTS_CSV,
        BEST_ESTIMATOR,
        HOLDOUT,
        TUNED_ESTIMATOR,
        REPORT,
        *REPORT_IMAGES,
    ]


def artifact_uris(output: str, with_model: bool) -> dict[str, str]:
    base = output.rstrip("/")
    uris = {
        "cvResults": f"{base}/{CV_RESULTS_PARQUET}",
        "cvResultsCsv": f"{base}/{CV_RESULTS_CSV}",
        "summary": f"{base}/{SUMMARY}",
    }
    if with_model:
        uris["bestEstimator"] = f"{base}/{BEST_ESTIMATOR}"
    return uris


def to_frame(table: dict[str, Any]) -> pd.DataFrame:
    """cv_results as a table, parameter columns as JSON text."""
    columns: dict[str, Any] = {}
    for key, value in table.items():
        if key == "params":
            columns[key] = [json.dumps(p, default=_json_value) for p in value]
        elif key.startswith("param_"):
            mask = np.ma.getmaskarray(value)
            columns[key] = pd.array(
                [
                    None if masked else json.dumps(v, default=_json_value)
                    for v, masked in zip(np.ma.getdata(value), mask, strict=True)
                ],
                dtype="string",
            )
        else:
            columns[key] = np.asarray(value)
    return pd.DataFrame(columns)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as a Parquet file, built in Arrow's own memory.

    Arrow's native buffers, never a Python file object: Arrow's worker
    threads may drop the last reference to a reader after the interpreter has
    begun to exit, and a Python file's destructor then needs the GIL, which
    aborts the process (std::terminate) after the work is done.
    """
    sink = pa.BufferOutputStream()
    frame.to_parquet(sink, index=False)
    return bytes(sink.getvalue().to_pybytes())


def frame_from_parquet(data: bytes) -> pd.DataFrame:
    """The table in a Parquet file's bytes (see :func:`parquet_bytes`)."""
    return pd.read_parquet(pa.BufferReader(data))


def write_cv_results(store: Store, table: dict[str, Any]) -> None:
    frame = to_frame(table)
    store.write(CV_RESULTS_PARQUET, parquet_bytes(frame))
    store.write(CV_RESULTS_CSV, frame.to_csv(index=False).encode())


def read_cv_results(store: Store) -> dict[str, Any]:
    """cv_results as scikit-learn shapes it: arrays, masked params, params list."""
    frame = frame_from_parquet(store.read(CV_RESULTS_PARQUET))
    table: dict[str, Any] = {}
    for key in frame.columns:
        column = frame[key]
        if key == "params":
            table[key] = [json.loads(text) for text in column]
        elif key.startswith("param_"):
            present = column.notna().to_numpy()
            values = [
                json.loads(text) if ok else None
                for text, ok in zip(column, present, strict=True)
            ]
            table[key] = _param_column(values, present)
        else:
            table[key] = column.to_numpy()
    return table


def _param_column(values: list[Any], present: np.ndarray) -> np.ma.MaskedArray:
    """A ``param_<name>`` column with the dtype scikit-learn gives it.

    As GridSearchCV does: the dtype numpy infers from the values candidates
    have (float64 for floats, int64 for ints), object for strings, mixed
    kinds or values numpy cannot put in one flat array.
    """
    given = [v for v, ok in zip(values, present, strict=True) if ok]
    try:
        inferred = np.array(given)
    except ValueError:
        dtype = np.dtype(object)
    else:
        plain = inferred.dtype.kind != "U" and inferred.ndim == 1
        dtype = inferred.dtype if plain else np.dtype(object)
    column = np.ma.MaskedArray(np.empty(len(values), dtype=dtype), mask=~present)
    for i in np.flatnonzero(present):
        column[i] = values[i]
    return column


def read_summary(store: Store) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(store.read(SUMMARY))
    return summary


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)
