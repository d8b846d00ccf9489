"""A search made ready to run: spec checked, data loaded, splits and plan fixed.

Called once per process by ``kubegrid run``, ``run-shard`` and ``reduce``. Every
check that can reject a user's mistake runs here, before any fit, in the order
that gives the cheapest answer first: the manifest, the names it uses, then
the data.
"""

from __future__ import annotations

import logging
import platform
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV

from kubegrid import arrays, estimators, holdout, metrics, parallel, planning, storage
from kubegrid import data as datasets
from kubegrid import spec as specs
from kubegrid.errors import SpecError

logger = logging.getLogger(__name__)


@dataclass
class SearchContext:
    """Everything a shard or the reducer needs, computed once per process."""

    manifest: specs.GridSearch
    estimator: BaseEstimator
    data: datasets.Data
    splits: list[tuple[np.ndarray, np.ndarray]]
    plan: planning.Plan
    fingerprint: str
    versions: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    # The test rows kept out of the search (spec.dataset.holdout), if any.
    holdout: datasets.Data | None = None
    # X and y as the tasks fit on them (see kubegrid.arrays); the refit and
    # the holdout use ``data``.
    task_X: Any = None
    task_y: Any = None

    @property
    def spec(self) -> specs.GridSearchSpec:
        return self.manifest.spec

    def output(self) -> storage.Store:
        return storage.open_store(self.spec.output.uri, storage.location_of(self.spec))

    def check_output(self) -> None:
        """Fail before any fit if results could not be written where asked."""
        try:
            storage.check_writable(self.output())
        except storage.StorageAccessError as exc:
            raise SpecError(
                "spec.output.uri",
                f"cannot write results to {self.spec.output.uri}: {exc}; fix the "
                "path or bucket and its permissions (or pass --output)",
            ) from None

    def search_cv(self) -> GridSearchCV:
        """A GridSearchCV configured like this search, for scikit-learn's helpers."""
        return GridSearchCV(
            self.estimator,
            param_grid={},
            scoring=metrics.for_search(self.spec.scoring),
            refit=self.spec.refit,
            return_train_score=self.spec.return_train_score,
            error_score=self.spec.error_score_value,
        )

    def estimator_jobs(self) -> int:
        """The most threads one fit may take through its own ``n_jobs``."""
        params = [self.estimator.get_params(deep=True), *self.plan.candidates]
        return parallel.estimator_jobs(params)

    def scorers(self) -> Any:
        scorers, _ = self.search_cv()._get_scorers()
        return scorers


def library_versions() -> dict[str, str]:
    """Versions that can change a number; part of every result's identity."""
    import joblib
    import pandas
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "joblib": joblib.__version__,
    }


def check_without_data(
    manifest: specs.GridSearch,
) -> tuple[BaseEstimator, list[dict[str, Any]]]:
    """Every check that needs the estimator classes but not the data."""
    spec = manifest.spec
    estimators.check_scoring(spec.scoring)
    estimators.check_reproducible(spec)
    estimator = estimators.build(spec.estimator)
    estimators.check_grid_names(estimator, spec.param_grid)
    candidate_params = planning.candidates(spec)
    drawn = candidate_params if spec.search.type == "random" else None
    estimators.check_grid_values(estimator, spec.param_grid, drawn)
    estimators.check_fixed_values(estimator, spec.estimator, spec.param_grid)
    holdout.check_statically(spec)
    metrics.check_estimator(spec.scoring, estimator, candidate_params)
    holdout.check_estimator(spec, estimator)
    return estimator, candidate_params


def prepare(manifest: specs.GridSearch, n_shards: int | None = None) -> SearchContext:
    """Check the search, load its data, and fix its splits and plan."""
    spec = manifest.spec
    estimator, candidate_params = check_without_data(manifest)

    # The data: columns must exist and suit the estimator before any fit.
    data = datasets.load(spec)
    datasets.check_fits_estimator(data, estimator)
    datasets.check_target_fits_estimator(data, estimator)
    datasets.check_missing_values(data, estimator)

    # The test rows leave here, in every process alike: nothing below sees them.
    data, test = holdout.split(spec, data, estimator)
    metrics.check_target(spec.scoring, data.y)
    metrics.check_scorers_on_target(spec.scoring, estimator, data.y)
    holdout.check_target(spec, data.y)

    # Splits are computed once, here, exactly as GridSearchCV computes them,
    # and every candidate is evaluated on these same folds.
    splitter = estimators.build_cv(spec.cv, estimator, data.y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            splits = list(splitter.split(data.X, data.y, data.groups))
        except ValueError as exc:
            raise SpecError("spec.cv", f"cannot split the data: {exc}") from None
    notes = [str(w.message) for w in caught]
    small = planning.small_random_space(spec, len(candidate_params))
    notes += [small] if small else []
    notes += datasets.check_classes(data, estimator, len(splits))

    versions = library_versions()
    plan = planning.make_plan(spec, len(splits), n_shards, candidate_params)
    fingerprint = planning.fingerprint(spec, data.checksum, versions)
    for note in notes:
        logger.warning("%s", note)
    task_X, task_y = arrays.task_inputs(data.X, data.y, estimator, candidate_params)
    return SearchContext(
        manifest,
        estimator,
        data,
        splits,
        plan,
        fingerprint,
        versions,
        notes,
        test,
        task_X,
        task_y,
    )
