"""Inputs of the engine tests: scikit-learn's bundled data as CSV, manifests.

Every engine test starts from files on disk, as a user does: a dataset written
as CSV from one of the tables scikit-learn ships (no download), and a
GridSearch manifest written as YAML. The tests then read the same CSV back
with pandas to give scikit-learn exactly the frame kubegrid reads.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn.datasets
import yaml
from sklearn.model_selection._search import BaseSearchCV

from kubegrid import results, storage

_LOADERS = {
    "digits": sklearn.datasets.load_digits,
    "breast_cancer": sklearn.datasets.load_breast_cancer,
    "iris": sklearn.datasets.load_iris,
    "wine": sklearn.datasets.load_wine,
    "diabetes": sklearn.datasets.load_diabetes,
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A CSV on disk and the frame scikit-learn gets from reading it back."""

    path: pathlib.Path
    frame: pd.DataFrame
    target: str = "target"
    groups: str | None = None

    @property
    def X(self) -> pd.DataFrame:
        dropped = [c for c in (self.target, self.groups) if c]
        return self.frame.drop(columns=dropped)

    @property
    def y(self) -> pd.Series:
        return self.frame[self.target]

    @property
    def group_labels(self) -> pd.Series | None:
        return self.frame[self.groups] if self.groups else None


def write_dataset(
    folder: pathlib.Path,
    name: str,
    *,
    rows: int | None = None,
    n_groups: int | None = None,
    edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> Dataset:
    """Write one of scikit-learn's tables to ``folder/name.csv``.

    ``rows`` keeps a seeded random subsample (row order preserved);
    ``n_groups`` adds a ``group`` column of seeded labels 0..n_groups-1;
    ``edit`` changes the frame before it is written.
    """
    frame = _LOADERS[name](as_frame=True).frame
    if rows is not None:
        keep = np.sort(np.random.default_rng(0).choice(len(frame), rows, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)
    groups = None
    if n_groups is not None:
        frame["group"] = np.random.default_rng(1).integers(0, n_groups, len(frame))
        groups = "group"
    if edit is not None:
        frame = edit(frame)
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return Dataset(path, pd.read_csv(path), groups=groups)


def manifest(
    dataset: Dataset,
    output: pathlib.Path,
    *,
    estimator: dict[str, Any],
    param_grid: dict[str, Any] | list[dict[str, Any]],
    **spec: Any,
) -> dict[str, Any]:
    """A GridSearch manifest as a dict; ``spec`` adds or overrides camelCase fields."""
    dataset_block: dict[str, Any] = {"uri": str(dataset.path), "target": dataset.target}
    if dataset.groups:
        dataset_block["groups"] = dataset.groups
    return {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": "engine-test"},
        "spec": {
            "dataset": dataset_block,
            "estimator": copy.deepcopy(estimator),
            "paramGrid": copy.deepcopy(param_grid),
            "output": {"uri": str(output)},
            **copy.deepcopy(spec),
        },
    }


def write_manifest(folder: pathlib.Path, document: dict[str, Any]) -> pathlib.Path:
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# --------------------------------------------------------------------------
# Comparing kubegrid's artifacts with a fitted scikit-learn search


@dataclasses.dataclass
class Outcome:
    """What a kubegrid search left in its output directory."""

    cv_results: dict[str, Any]
    summary: dict[str, Any]
    output: pathlib.Path

    @property
    def model_path(self) -> pathlib.Path:
        return self.output / results.BEST_ESTIMATOR


def read_outcome(output: pathlib.Path) -> Outcome:
    store = storage.open_store(str(output))
    return Outcome(results.read_cv_results(store), results.read_summary(store), output)


def python_kind(value: Any) -> type:
    """The Python type a value stands for (a numpy scalar counts as its item)."""
    return type(value.item()) if isinstance(value, np.generic) else type(value)


def assert_same_params(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name] == value or (value != value and got[name] != got[name])
        assert python_kind(got[name]) is python_kind(value), name


def assert_same_param_column(
    got: np.ma.MaskedArray, expected: np.ma.MaskedArray
) -> None:
    assert got.dtype == expected.dtype
    mask = np.ma.getmaskarray(expected)
    np.testing.assert_array_equal(np.ma.getmaskarray(got), mask)
    for value, want in zip(got.data[~mask], expected.data[~mask], strict=True):
        assert value == want


def assert_same_search(ours: Outcome, search: BaseSearchCV, X: Any) -> None:
    """Everything a user reads from ``search`` must be what kubegrid wrote."""
    expected, got = search.cv_results_, ours.cv_results
    assert set(expected) <= set(got), set(expected) - set(got)
    for key, want in expected.items():
        if key.endswith("_time"):
            continue  # timings differ from run to run
        if key == "params":
            assert len(got[key]) == len(want)
            for got_params, want_params in zip(got[key], want, strict=True):
                assert_same_params(got_params, want_params)
        elif key.startswith("param_"):
            assert_same_param_column(got[key], want)
        else:
            # Exact: the same scikit-learn code computed the same floats.
            np.testing.assert_array_equal(got[key], want, err_msg=key)
            assert got[key].dtype.kind == np.asarray(want).dtype.kind, key

    summary = ours.summary
    if hasattr(search, "best_index_"):
        assert summary["bestIndex"] == search.best_index_
        assert_same_params(summary["bestParams"], search.best_params_)
        assert summary["bestScore"] == search.best_score_
    else:
        assert "bestIndex" not in summary and "bestParams" not in summary
    if search.refit:
        model = joblib.load(ours.model_path)
        np.testing.assert_array_equal(
            model.predict(X), search.best_estimator_.predict(X)
        )
    else:
        assert not ours.model_path.exists()
