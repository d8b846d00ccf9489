"""A transformer that turns rows into their RBF kernel against the fitted rows.

Named by dotted path in a manifest (``tests.support.kernels.RBFKernel``), it
feeds a final step that reads a precomputed kernel (``SVC(kernel=
"precomputed")``): that step selects square blocks of its input, not rows.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.metrics.pairwise import rbf_kernel


class RBFKernel(TransformerMixin, BaseEstimator):
    def __init__(self, gamma: float | None = None) -> None:
        self.gamma = gamma

    def fit(self, X: Any, y: Any = None) -> RBFKernel:
        self.X_fit_ = X
        return self

    def transform(self, X: Any) -> Any:
        return rbf_kernel(X, self.X_fit_, gamma=self.gamma)
