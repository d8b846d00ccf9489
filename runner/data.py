"""Loading the dataset a spec names, and checking it fits the search.

Called once per process by the CLI, each shard and the reducer. The raw bytes
are hashed so that results can be tied to the exact data they came from.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import type_of_target

from kubegrid import samples, storage
from kubegrid import spec as specs
from kubegrid.errors import DataError

logger = logging.getLogger(__name__)

# First steps that take non-numeric columns as they are.
_TAKES_TEXT = (ColumnTransformer,)
_TAKES_TEXT_NAMES = (
    "OneHotEncoder",
    "OrdinalEncoder",
    "TargetEncoder",
    "CountVectorizer",
    "TfidfVectorizer",
    "HashingVectorizer",
    "DictVectorizer",
    "FeatureHasher",
)


@dataclass(frozen=True)
class Data:
    """Features, target and optional groups, plus the raw data's checksum."""

    X: pd.DataFrame
    y: pd.Series
    groups: pd.Series | None
    checksum: str

    @property
    def n_samples(self) -> int:
        return len(self.X)


def read_frame(
    uri: str, fmt: str, location: storage.Location
) -> tuple[pd.DataFrame, str]:
    """The table at ``uri`` and the sha256 of its bytes."""
    try:
        with storage.readable_path(uri, location) as path:
            checksum = _sha256(path, uri)
            frame = _parse(path, uri, fmt)
    except storage.StorageAccessError as exc:
        where = (
            "the bucket and key, spec.storage and the credentials"
            if storage.is_s3(uri)
            else "the path (a relative one is read from the directory kubegrid runs in)"
        )
        command = None if storage.is_s3(uri) else samples.command_for(uri)
        if command and not Path(uri).exists():
            where += f"; to write this sample dataset there: {command}"
        raise DataError(
            "spec.dataset.uri", f"cannot read the dataset: {exc}; check {where}"
        ) from None
    return frame, checksum


def _sha256(path: Path, uri: str) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise storage.StorageAccessError(f"{uri}: {exc.strerror}") from None


def _parse(path: Path, uri: str, fmt: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
            _release_arrow_memory()
            return frame
        return pd.read_csv(path)
    except Exception as exc:
        raise DataError(
            "spec.dataset.uri", f"cannot read {uri} as {fmt}: {exc}"
        ) from None


def _release_arrow_memory() -> None:
    """Hand back to the system the pages Arrow's allocator kept after reading.

    Arrow's allocator holds on to the memory of the table a Parquet file was
    decoded into even once pandas has taken the columns it needs: for a table
    of N bytes the process stays about 3 N above where it started instead of
    N, and every forked worker inherits those pages.
    """
    import pyarrow as pa  # already imported by pandas' Parquet reader

    pa.default_memory_pool().release_unused()


def load(spec: specs.GridSearchSpec) -> Data:
    """Read the dataset and cut it into X, y and groups, checking the columns."""
    dataset = spec.dataset
    frame, checksum = read_frame(
        dataset.uri, dataset.resolved_format, storage.location_of(spec)
    )
    return split_columns(frame, dataset, checksum)


def split_columns(frame: pd.DataFrame, dataset: specs.Dataset, checksum: str) -> Data:
    """X, y and groups from one table, as the dataset block assigns them."""
    columns = list(frame.columns)
    # No target, and a file whose name does not say CSV, or that parsed into a
    # single column: most often not CSV at all (JSON, text, tab-separated).
    if dataset.target not in columns and (len(columns) == 1 or not _named(dataset)):
        raise DataError(
            "spec.dataset.uri",
            f"{dataset.uri} read as {dataset.resolved_format} has no column "
            f"{dataset.target!r} (its first columns: {_shown(columns, 3)}); give "
            "a comma-separated CSV or a Parquet file (the format comes from the "
            "name, .csv or .parquet, or from spec.dataset.format)",
        )
    _require_column(dataset.target, "spec.dataset.target", columns)
    if dataset.groups:
        _require_column(dataset.groups, "spec.dataset.groups", columns)
    if dataset.features is not None:
        for i, name in enumerate(dataset.features):
            _require_column(name, f"spec.dataset.features[{i}]", columns)
        features = list(dataset.features)
    else:
        features = [c for c in columns if c not in (dataset.target, dataset.groups)]
    if not features:
        raise DataError("spec.dataset.features", "no feature columns are left")
    if frame.empty:
        raise DataError(
            "spec.dataset.uri", "the dataset has a header but no rows; check the file"
        )

    y = frame[dataset.target]
    if y.isna().any():
        rows = np.flatnonzero(y.isna().to_numpy())[:5].tolist()
        raise DataError(
            "spec.dataset.target",
            f"column {dataset.target!r} has {int(y.isna().sum())} missing values "
            f"(first rows: {rows}); drop or fill those rows before the search",
        )
    numbers = y.to_numpy(dtype=float) if _numeric(y) else np.zeros(0)
    infinite = np.flatnonzero(np.isinf(numbers))
    if len(infinite):
        raise DataError(
            "spec.dataset.target",
            f"column {dataset.target!r} has {len(infinite)} infinite values (first "
            f"rows: {infinite[:5].tolist()}); drop or fix those rows before the search",
        )
    groups = frame[dataset.groups] if dataset.groups else None
    if groups is not None and groups.isna().any():
        raise DataError(
            "spec.dataset.groups",
            f"column {dataset.groups!r} has missing values; every row needs a group",
        )
    return Data(frame[features], y, groups, checksum)


_FORMAT_SUFFIXES = (
    ".parquet",
    ".pq",
    ".csv",
    ".csv.gz",
    ".csv.bz2",
    ".csv.zip",
    ".csv.xz",
    ".csv.zst",
)


def _named(dataset: specs.Dataset) -> bool:
    """Whether the format was given, or the file's name says it."""
    name = dataset.uri.rsplit("?", 1)[0].lower()
    return dataset.format is not None or name.endswith(_FORMAT_SUFFIXES)


def _shown(columns: list[Any], limit: int = 20) -> str:
    """The first column names, for a message."""
    more = " …" if len(columns) > limit else ""
    return ", ".join(str(c)[:40] for c in columns[:limit]) + more


def _require_column(name: str, field: str, columns: list[str]) -> None:
    if name not in columns:
        import difflib

        close = difflib.get_close_matches(name, [str(c) for c in columns], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataError(
            field,
            f"column {name!r} is not in the dataset; {hint}columns are: "
            f"{_shown(columns)}",
        )


def check_fits_estimator(data: Data, estimator: BaseEstimator) -> None:
    """Reject columns the estimator cannot take, naming them.

    Only scikit-learn's own first steps are judged: another library's may
    take text or categories (LightGBM does), and its fit will say if not.
    """
    first = _step(estimator, 0)
    if _takes_text(estimator) or not _from_sklearn(first):
        return
    numeric = data.X.select_dtypes(include=["number", "bool"]).columns
    others = [c for c in data.X.columns if c not in numeric]
    # HistGradientBoosting treats pandas' category columns as categorical.
    if getattr(first, "categorical_features", None) == "from_dtype":
        others = [
            c for c in others if not isinstance(data.X[c].dtype, pd.CategoricalDtype)
        ]
    if others:
        row, example = _first_text(data.X[others[0]])
        raise DataError(
            "spec.dataset.features",
            f"column {others[0]!r} is not numeric (row {row}: {example!r})"
            f"{f' and so are {others[1:6]}' if len(others) > 1 else ''}; "
            f"{_first_step(estimator)} needs numbers: drop it from dataset.features "
            "or encode it in a pipeline (a ColumnTransformer with a OneHotEncoder)",
        )


def _first_text(column: pd.Series) -> tuple[int, str]:
    """The first value of a column that is not a number, and its row: the one
    that made the whole column text."""
    present = column.dropna()
    numbers = pd.to_numeric(present.astype(str), errors="coerce")
    text = present[numbers.isna()]
    shown = text if len(text) else present
    if not len(shown):
        return 0, ""
    return column.index.get_loc(shown.index[0]), str(shown.iloc[0])


def check_target_fits_estimator(data: Data, estimator: BaseEstimator) -> None:
    """Reject a target of the wrong kind for scikit-learn's own estimators:
    text for a regressor, continuous numbers for a classifier. Every fit
    would fail on it."""
    final = _step(estimator, -1)
    if not _from_sklearn(final):
        return  # another library's estimator may encode its target itself
    y = data.y
    name, kind = type(final).__name__, None
    if is_regressor(final) and not _numeric(y):
        row, text = _first_text(y)
        kind = f"holds text (row {row}: {text!r})"
        fix = "choose a classifier for labels, or a numeric target column"
    elif is_classifier(final) and _target_type(y) == "continuous":
        values = y.to_numpy()
        # Labels too large for an integer are continuous to scikit-learn too.
        fractional = np.flatnonzero(values % 1 != 0)
        row = int(fractional[0]) if len(fractional) else 0
        kind = f"holds continuous values (row {row}: {values[row].item()!r})"
        fix = "choose a regressor, or a target of class labels"
    if kind is not None:
        raise DataError(
            "spec.dataset.target",
            f"column {y.name!r} {kind}, which {name} cannot learn; {fix}",
        )


def _target_type(y: pd.Series) -> str:
    """scikit-learn's name for the kind of target (binary, continuous…)."""
    with warnings.catch_warnings():
        # Labels too large for an integer warn as they are compared with one.
        warnings.simplefilter("ignore", RuntimeWarning)
        return str(type_of_target(y))


def _step(estimator: BaseEstimator, index: int) -> BaseEstimator:
    """A pipeline's step at ``index`` (0 meets the columns, -1 the target);
    a plain estimator is both."""
    return estimator.steps[index][1] if isinstance(estimator, Pipeline) else estimator


def _from_sklearn(estimator: BaseEstimator) -> bool:
    return type(estimator).__module__.startswith("sklearn.")


def _numeric(y: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y)


def check_missing_values(data: Data, estimator: BaseEstimator) -> None:
    """Reject missing feature values when what meets them first refuses NaN.

    Every fit would fail on them, each with a traceback, and the refit after
    them; an estimator or first pipeline step that takes NaN (an imputer,
    HistGradientBoosting, a scaler passing them on) is left to run, since
    only a fit can tell whether a later step copes.
    """
    first = _step(estimator, 0)
    if _allows_nan(first):
        return
    missing = data.X.isna()
    counts = missing.sum()
    if not counts.any():
        return
    column = str(counts[counts > 0].index[0])
    rows = np.flatnonzero(missing[column].to_numpy())[:5].tolist()
    raise DataError(
        "spec.dataset.features",
        f"column {column!r} has {int(counts[column])} missing values (first rows: "
        f"{rows}); {_first_step(estimator)} cannot take them: drop or fill those "
        "rows, or start a pipeline with a sklearn.impute.SimpleImputer",
    )


def _allows_nan(estimator: BaseEstimator) -> bool:
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:  # not a scikit-learn estimator: let a fit decide
        return True


def _first_step(estimator: BaseEstimator) -> str:
    """What meets the raw columns first, as a message names it."""
    if isinstance(estimator, Pipeline):
        name, step = estimator.steps[0]
        return f"the pipeline's first step {name!r} ({type(step).__name__})"
    return type(estimator).__name__


def check_classes(data: Data, estimator: BaseEstimator, n_splits: int) -> list[str]:
    """Warnings about classes too small for the folds (scikit-learn's own rule)."""
    if not is_classifier(estimator):
        return []
    counts = data.y.value_counts()
    small = counts[counts < n_splits]
    if small.empty:
        return []
    return [
        f"spec.dataset.target: class {label!r} has only {count} rows, fewer than the "
        f"{n_splits} folds; some folds will not see it (drop or merge the class, "
        "or use fewer splits in spec.cv)"
        for label, count in small.head(5).items()
    ]


def _takes_text(estimator: BaseEstimator) -> bool:
    first = _step(estimator, 0)
    return isinstance(first, _TAKES_TEXT) or type(first).__name__ in _TAKES_TEXT_NAMES
