"""Tasks fit on arrays only where scikit-learn could not tell them from the
DataFrame: same values, same memory layout, nothing reading column names.

The end-to-end proof is the equivalence suite (exact equality with
GridSearchCV, Ridge included, whose scores move in the last bit with the
layout); these tests pin the pieces, including the way scikit-learn selects a
split's rows, which a new scikit-learn release could change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import check_scoring
from sklearn.model_selection import KFold
from sklearn.model_selection._validation import _fit_and_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils import _safe_indexing

from kubegrid import arrays


def _frame(dtype: str, rows: int = 60, columns: int = 5) -> pd.DataFrame:
    values = np.random.default_rng(0).normal(size=(rows, columns)) * 100
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(columns)])
    return frame.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
def test_rows_come_out_as_pandas_hands_them_to_scikit_learn(dtype: str) -> None:
    """Values, dtype and strides of a split's rows equal the frame's own."""
    frame = _frame(dtype)
    X, _ = arrays.task_inputs(frame, pd.Series(np.arange(60)), Ridge(), [{}])
    assert isinstance(X, arrays.ColumnMajorRows)
    picks = [
        np.array([5, 1, 40, 2, 2, 59]),
        np.arange(60)[::3],
        np.arange(60) % 4 == 0,
    ]
    for rows in picks:
        ours = _safe_indexing(X, rows)
        theirs = np.asarray(_safe_indexing(frame, rows))
        assert type(ours) is np.ndarray
        np.testing.assert_array_equal(ours, theirs)
        assert ours.dtype == theirs.dtype
        assert ours.strides == theirs.strides


def test_the_array_shares_the_frames_memory() -> None:
    frame = _frame("float64")
    X, _ = arrays.task_inputs(frame, pd.Series(np.arange(60)), Ridge(), [{}])
    assert np.shares_memory(np.asarray(X), frame.to_numpy())


@pytest.mark.parametrize(
    "estimator", [LinearRegression(), Ridge(solver="svd"), Ridge(solver="cholesky")]
)
@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_scores_are_those_of_the_frame_to_the_last_bit(
    estimator: BaseEstimator, dtype: str
) -> None:
    """Estimators that sum through BLAS score exactly as from the DataFrame."""
    frame = _frame(dtype, rows=200, columns=12)
    y = pd.Series(frame.to_numpy(float) @ np.linspace(-1, 1, 12) + np.arange(200))
    X_task, y_task = arrays.task_inputs(frame, y, estimator, [{}])
    assert isinstance(X_task, arrays.ColumnMajorRows)
    assert type(y_task) is np.ndarray
    scorer = check_scoring(estimator, "r2")
    for train, test in KFold(5).split(frame):
        ours = _score(estimator, X_task, y_task, train, test, scorer)
        theirs = _score(estimator, frame, y, train, test, scorer)
        assert ours == theirs


def _score(estimator: Any, X: Any, y: Any, train: Any, test: Any, scorer: Any) -> Any:
    out = _fit_and_score(
        clone(estimator),
        X,
        y,
        scorer=scorer,
        train=train,
        test=test,
        verbose=0,
        parameters={},
        fit_params={},
        score_params={},
    )
    return out["test_scores"]


class _ElsewhereEstimator(BaseEstimator):
    """Stands for an estimator from another library: it may read columns."""


@pytest.mark.parametrize(
    "frame, estimator, candidates",
    [
        # Columns of several dtypes: one array would change some values' type.
        (_frame("float64").astype({"f0": "int64"}), Ridge(), [{}]),
        # A column named by a parameter, fixed or searched.
        (
            _frame("float64"),
            HistGradientBoostingClassifier(categorical_features=["f1"]),
            [{}],
        ),
        (
            _frame("float64"),
            HistGradientBoostingClassifier(),
            [{"categorical_features": None}, {"categorical_features": ["f2"]}],
        ),
        # A column named as a key of a mapping, fixed or searched.
        (
            _frame("float64"),
            HistGradientBoostingClassifier(monotonic_cst={"f1": 1}),
            [{}],
        ),
        (
            _frame("float64"),
            HistGradientBoostingClassifier(),
            [{"monotonic_cst": None}, {"monotonic_cst": {"f0": 1, "f3": -1}}],
        ),
        # Selecting columns is what ColumnTransformer is for.
        (
            _frame("float64"),
            Pipeline(
                [
                    ("columns", ColumnTransformer([("s", StandardScaler(), [0, 1])])),
                    ("model", Ridge()),
                ]
            ),
            [{}],
        ),
        # A precomputed kernel selects square blocks, not rows.
        (_frame("float64"), SVC(), [{"kernel": "rbf"}, {"kernel": "precomputed"}]),
        (_frame("float64"), _ElsewhereEstimator(), [{}]),
        (
            _frame("float64"),
            Pipeline([("scale", StandardScaler()), ("model", _ElsewhereEstimator())]),
            [{}],
        ),
    ],
    ids=[
        "mixed-dtypes",
        "fixed-column-name",
        "searched-column-name",
        "fixed-column-name-as-a-key",
        "searched-column-name-as-a-key",
        "column-transformer",
        "precomputed",
        "other-library",
        "other-library-in-a-pipeline",
    ],
)
def test_the_frame_is_kept_where_it_could_matter(
    frame: pd.DataFrame, estimator: BaseEstimator, candidates: list[dict[str, Any]]
) -> None:
    y = pd.Series(np.arange(len(frame)) % 2)
    X, target = arrays.task_inputs(frame, y, estimator, candidates)
    assert X is frame
    assert target is y


def test_text_labels_stay_a_series_beside_an_array() -> None:
    frame = _frame("float64")
    y = pd.Series(np.where(np.arange(60) % 2, "yes", "no"))
    X, target = arrays.task_inputs(frame, y, LogisticRegression(), [{}])
    assert isinstance(X, arrays.ColumnMajorRows)
    assert target is y


def test_a_split_output_gives_each_part_back_as_the_prefix_returned_it() -> None:
    """The split's training and test rows come back equal to, laid out like,
    and independent of what the prefix returned; other rows from the whole."""
    values = np.random.default_rng(1).normal(size=(10, 3))
    train, test = np.array([0, 2, 4, 6, 8, 9]), np.array([1, 3, 5, 7])
    fitted = np.asfortranarray(values[train])  # a scaler's fit_transform
    scored = np.ascontiguousarray(values[test])  # PCA's transform
    X = arrays.SplitRows.of(10, (train, fitted), (test, scored))

    for rows, part in ((train, fitted), (test, scored)):
        for key in (rows, rows.copy()):  # the split's array, or an equal one
            got = _safe_indexing(X, key)
            np.testing.assert_array_equal(got, part)
            assert got.strides == part.strides
    # A final step that scales its input in place spoils no other candidate.
    _safe_indexing(X, train)[:] = 0.0
    np.testing.assert_array_equal(_safe_indexing(X, train), fitted)
    np.testing.assert_array_equal(_safe_indexing(X, np.array([9, 1])), values[[9, 1]])
