"""Steps that leave a line in a file each time they are fitted.

Named by dotted path in a manifest (``tests.support.counting.CountingScaler``),
it lets a test count the fits that every process of a search made, the forked
workers' included: each fit appends one line to the file named by
``$KUBEGRID_TEST_FIT_LOG``. Appends of one short line are atomic, so processes
fitting at once lose none. Unset, each is its plain scikit-learn step.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

FIT_LOG_ENV = "KUBEGRID_TEST_FIT_LOG"


class CountingScaler(StandardScaler):
    """StandardScaler, counting its fits (``fit_transform`` calls ``fit``)."""

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        _count(X)
        return super().fit(X, y, sample_weight)


class CountingPCA(PCA):
    """PCA, counting its fits. Its ``fit_transform`` output is column-major
    and its ``transform`` output row-major."""

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        _count(X)
        return super().fit_transform(X, y)

    def fit(self, X: Any, y: Any = None) -> Any:
        _count(X)
        return super().fit(X, y)


def _count(X: Any) -> None:
    log = os.environ.get(FIT_LOG_ENV)
    if log:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {len(X)}\n")


def fits(log: pathlib.Path) -> int:
    """How many fits the log holds (none when no process wrote it)."""
    return len(log.read_text().splitlines()) if log.exists() else 0
