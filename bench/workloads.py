"""The side-by-side workloads W1–W3, each as data plus a search.

Called by the comparison. A workload is described once, in a manifest's own
vocabulary (``estimator``, ``paramGrid``, ``cv``, ``scoring``): the kubegrid
contender gets it as a GridSearch manifest, the GridSearchCV contender as the
job file of :mod:`bench.baseline`, so the two cannot drift apart.

``quick`` sizes only make a smoke test fast; their numbers mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Workload:
    """One comparison: a dataset and a search over it."""

    name: str
    title: str
    make_frame: Callable[[], pd.DataFrame]
    estimator: dict[str, Any]
    param_grid: dict[str, list[Any]]
    cv: int = 5
    scoring: str | None = None
    target: str = "target"
    data_key: str = field(default="")

    @property
    def n_candidates(self) -> int:
        return int(np.prod([len(v) for v in self.param_grid.values()]))

    @property
    def n_tasks(self) -> int:
        return self.n_candidates * self.cv

    def search_block(self) -> dict[str, Any]:
        """What both contenders search: the manifest's spec fields, camelCase."""
        block: dict[str, Any] = {
            "estimator": self.estimator,
            "paramGrid": self.param_grid,
            "cv": self.cv,
        }
        if self.scoring:
            block["scoring"] = self.scoring
        return block


def _floats(values: Any) -> list[float]:
    # Plain floats, rounded so that YAML and JSON write them back exactly.
    return [float(f"{v:.6g}") for v in values]


def _digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    return load_digits(as_frame=True).frame


def _diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True).frame


def _wide(n_samples: int, n_features: int) -> Callable[[], pd.DataFrame]:
    def make() -> pd.DataFrame:
        from sklearn.datasets import make_classification

        X, y = make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=40,
            n_redundant=40,
            random_state=0,
        )
        frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(n_features)])
        frame["target"] = y
        return frame

    return make


def comparisons(quick: bool) -> list[Workload]:
    """W1, W2 and W3 at full size, or at smoke-test size when ``quick``."""
    w2_rows, w2_cols = (500, 120) if quick else (2000, 500)
    return [
        Workload(
            name="W1",
            title="SVC on digits, C × gamma",
            make_frame=_digits,
            data_key="digits",
            estimator={"class": "sklearn.svm.SVC", "params": {"kernel": "rbf"}},
            param_grid={
                "C": _floats([1, 10] if quick else [0.1, 1, 10, 100, 1e3, 1e4]),
                "gamma": _floats(
                    [1e-4, 1e-3] if quick else [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
                ),
            },
            scoring="accuracy",
        ),
        Workload(
            name="W2",
            title="PCA(full SVD) → LogisticRegression, C only",
            make_frame=_wide(w2_rows, w2_cols),
            data_key=f"wide-{w2_rows}x{w2_cols}",
            # The PCA is ~95 % of each fit (0.38 s of 0.40 s on one core at
            # full size, measured here) and no candidate changes it.
            estimator={
                "pipeline": [
                    {
                        "name": "pca",
                        "class": "sklearn.decomposition.PCA",
                        "params": {"n_components": 40, "svd_solver": "full"},
                    },
                    {
                        "name": "clf",
                        "class": "sklearn.linear_model.LogisticRegression",
                        "params": {"max_iter": 1000},
                    },
                ]
            },
            param_grid={
                "clf__C": _floats(np.logspace(-3, 3, 6 if quick else 24)),
            },
            scoring="accuracy",
        ),
        Workload(
            name="W3",
            title="Ridge on diabetes, many tiny fits",
            make_frame=_diabetes,
            data_key="diabetes",
            estimator={"class": "sklearn.linear_model.Ridge"},
            param_grid={"alpha": _floats(np.logspace(-4, 4, 50 if quick else 500))},
        ),
    ]
