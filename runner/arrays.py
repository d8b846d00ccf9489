"""The data as every fit receives it: a plain array where that changes nothing.

Called once per process by :func:`kubegrid.context.prepare`; the tasks of
:mod:`kubegrid.execution` fit and score on what it returns, while the refit
and the holdout keep the DataFrame, so the best model learns its feature
names exactly as GridSearchCV's does.

scikit-learn converts a DataFrame to an array in every fit and every predict,
and selects a split's rows of it through pandas. Over many small fits that
bookkeeping costs more than the fitting: a Ridge on 442 rows takes 2.9 ms per
task from a DataFrame and 1.2 ms from arrays. The table is handed over as an
array only where no estimator could tell the difference:

* every feature column has one plain numeric dtype, so the array holds the
  very values an estimator would convert the frame to;
* nothing in the search reads column names or pandas dtypes: no estimator from
  outside scikit-learn or from ``sklearn.compose``, no parameter value naming
  a column, no precomputed kernel or distance matrix;
* the rows a task selects come out column-major, as pandas gives them to
  scikit-learn. BLAS sums in an order that follows the memory layout: a
  row-major copy moved Ridge's and LinearRegression's scores in the last bit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

logger = logging.getLogger(__name__)

# Parameter values meaning that X holds pairwise kernels or distances: such
# estimators select square blocks of X, not rows.
_PAIRWISE = "precomputed"


class ColumnMajorRows(np.ndarray):
    """A 2-D array whose selections of rows come out column-major.

    A DataFrame with one dtype stores its columns as one row-major block of
    shape (columns, rows): the rows a split selects are taken from that block
    and handed to scikit-learn transposed. This array does the same, with one
    copy, for the index forms scikit-learn uses (``X[rows]``, ``X[rows, ...]``);
    any other selection is made contiguous in column-major order too.
    """

    def __getitem__(self, key: Any) -> Any:
        plain = self.view(np.ndarray)
        rows = key[0] if isinstance(key, tuple) and len(key) == 2 else key
        if isinstance(key, tuple) and (len(key) != 2 or key[1] is not Ellipsis):
            rows = None
        if isinstance(rows, np.ndarray) and rows.ndim == 1 and rows.dtype.kind in "iu":
            columns = plain.T
            out = np.empty((columns.shape[0], rows.shape[0]), dtype=plain.dtype)
            np.take(columns, rows, axis=1, out=out)
            return out.T
        got = plain[key]
        if isinstance(got, np.ndarray) and got.ndim == 2:
            return np.asfortranarray(got)
        return got


class SplitRows(np.ndarray):
    """A pipeline prefix's output for every row, fitted on one split.

    Asked for the split's training or test rows (by the very index arrays the
    split holds), it hands back a copy of what the prefix returned for them,
    in the same memory layout, as Pipeline passes it to its final step. A
    fitted scaler keeps the column-major layout of its input while PCA's
    ``transform`` returns a row-major array and its ``fit_transform`` a
    column-major one; BLAS sums in an order that follows the layout, so any
    one layout for both would move some scores in the last bit. Other
    selections come from the array itself.
    """

    parts: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    # What fitting the prefix warned, one line each (see execution).
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, n_rows: int, *parts: tuple[np.ndarray, np.ndarray]) -> SplitRows:
        """The rows' values from ``parts``, pairs of (row indices, values)."""
        # Contiguous copies, so that every process, and the copy in the
        # machine's cache, holds the same layout for each part.
        parts = tuple((rows, values.copy(order="K")) for rows, values in parts)
        first = parts[0][1]
        whole = np.zeros((n_rows, *first.shape[1:]), first.dtype)
        for rows, values in parts:
            whole[rows] = values
        out = whole.view(cls)
        out.parts = parts
        return out

    def __getitem__(self, key: Any) -> Any:
        rows = key[0] if isinstance(key, tuple) and len(key) == 2 else key
        if isinstance(key, tuple) and (len(key) != 2 or key[1] is not Ellipsis):
            rows = None
        for known, values in self.parts:
            if rows is known or _same_rows(rows, known):
                # A copy: a final step may change its input in place.
                return values.copy(order="K")
        return self.view(np.ndarray)[key]


def _same_rows(rows: Any, known: np.ndarray) -> bool:
    return (
        isinstance(rows, np.ndarray)
        and rows.shape == known.shape
        and rows.dtype.kind in "iu"
        and bool(np.array_equal(rows, known))
    )


def task_inputs(
    X: pd.DataFrame,
    y: pd.Series,
    estimator: BaseEstimator,
    candidates: list[dict[str, Any]],
) -> tuple[Any, Any]:
    """``X`` and ``y`` as the search's tasks give them to scikit-learn."""
    if not _reads_no_columns(estimator, candidates, set(map(str, X.columns))):
        return X, y
    rows = _as_rows(X)
    if rows is None:
        return X, y
    target = y.to_numpy() if _plain_dtype(y.dtype, "iufb") else y
    logger.debug("tasks fit on arrays: %s X, %s y", rows.dtype, target.dtype)
    return rows, target


def _as_rows(X: pd.DataFrame) -> ColumnMajorRows | None:
    """The frame's values, shared not copied, or None when they are not one
    plain numeric block."""
    dtypes = set(X.dtypes)
    if X.shape[1] == 0 or len(dtypes) != 1:
        return None
    if not _plain_dtype(next(iter(dtypes)), "iuf"):
        return None
    values = X.to_numpy()
    if not values.flags.f_contiguous:
        return None
    return values.view(ColumnMajorRows)


def _plain_dtype(dtype: Any, kinds: str) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in kinds


def _reads_no_columns(
    estimator: BaseEstimator, candidates: list[dict[str, Any]], columns: set[str]
) -> bool:
    """True when no estimator or parameter of the search depends on X being a
    DataFrame."""
    values = _values(estimator.get_params(deep=True).values(), candidates)
    for value in values:
        if isinstance(value, BaseEstimator) and not _columns_free(value):
            return False
        if isinstance(value, str) and (value in columns or value == _PAIRWISE):
            return False
    return _columns_free(estimator)


def _values(fixed: Iterable[Any], candidates: list[dict[str, Any]]) -> Iterator[Any]:
    """Every parameter value of the search, containers opened up: a
    mapping's keys count as values (``monotonic_cst={"age": 1}``)."""
    pending = list(fixed)
    for params in candidates:
        pending.extend(params.values())
    while pending:
        value = pending.pop()
        if isinstance(value, (list, tuple, set, frozenset)):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, BaseEstimator):
            pending.extend(value.get_params(deep=True).values())
            yield value
        else:
            yield value


def _columns_free(estimator: BaseEstimator) -> bool:
    """scikit-learn's own estimators outside ``sklearn.compose`` see columns by
    position only."""
    module = type(estimator).__module__
    return module.startswith("sklearn.") and not module.startswith("sklearn.compose")
