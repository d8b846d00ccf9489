"""A pipeline prefix is fitted once per (prefix, split) unit, however cut.

Shards are cut by cost, so a unit can be divided between two shards of a
local run, or between two workers' slices of one pod's shard. The processes
of one machine then share the fitted prefix through a cache: the prefix here
is a scaler that logs every fit to a file, from whichever process fits it,
and the log must hold exactly one fit per unit (plus the reducer's refit),
while the results still equal GridSearchCV's.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from kubegrid import cli, planning
from kubegrid import spec as specs
from tests.engine.searches import (
    Dataset,
    assert_same_search,
    manifest,
    read_outcome,
    write_dataset,
    write_manifest,
)
from tests.support.counting import FIT_LOG_ENV, CountingScaler, fits

SPLITS = 3
PIPELINE = {
    "pipeline": [
        {"name": "scale", "class": "tests.support.counting.CountingScaler"},
        {
            "name": "clf",
            "class": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 5000},
        },
    ]
}


def _grid(n_c: int) -> dict[str, Any]:
    """Two prefixes, each shared by ``n_c`` candidates: 2 × SPLITS units."""
    return {
        "scale__with_std": [True, False],
        "clf__C": [0.01, 0.1, 1.0, 10.0][:n_c],
    }


def _document(data: Dataset, folder: pathlib.Path, n_c: int, **spec: Any) -> Any:
    return manifest(
        data,
        folder / "out",
        estimator=PIPELINE,
        param_grid=_grid(n_c),
        cv=SPLITS,
        **spec,
    )


def _units(plan: planning.Plan, tasks: np.ndarray) -> set[tuple[Any, int]]:
    """The (prefix, split) units that ``tasks`` touch."""
    found = set()
    for task in tasks.tolist():
        candidate, split = divmod(task, plan.n_splits)
        found.add((planning.prefix_key(plan.candidates[candidate], "clf"), split))
    return found


def _scikit_learn(data: Dataset, n_c: int) -> GridSearchCV:
    pipeline = Pipeline(
        [("scale", CountingScaler()), ("clf", LogisticRegression(max_iter=5000))]
    )
    return GridSearchCV(pipeline, _grid(n_c), cv=SPLITS).fit(data.X, data.y)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_unit_cut_between_shards_fits_its_prefix_once(
    workers: int, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kubegrid run`` with more shards than units: every unit's prefix is
    fitted once, whichever shard or worker gets there first, and the results
    equal GridSearchCV's."""
    data = write_dataset(tmp_path, "wine")
    document = _document(data, tmp_path, 4, sharding={"shards": 10})
    plan = planning.make_plan(specs.parse(document).spec, n_splits=SPLITS)
    units = len(_units(plan, plan.order))
    # More shards than units: cuts fall inside units, some of one task.
    per_shard = [_units(plan, plan.task_ids(i)) for i in range(plan.n_shards)]
    assert sum(map(len, per_shard)) > units == 6
    log = tmp_path / "fits.log"
    monkeypatch.setenv(FIT_LOG_ENV, str(log))

    path = write_manifest(tmp_path, document)
    argv = ["run", str(path), "--quiet", "--workers", str(workers)]
    assert cli.main(argv) == 0

    # One fit per unit, and the reducer's refit of the best candidate.
    assert fits(log) == units + 1, log.read_text()
    monkeypatch.delenv(FIT_LOG_ENV)
    ours = read_outcome(tmp_path / "out")
    assert_same_search(ours, _scikit_learn(data, 4), data.X)


def test_a_unit_cut_between_a_pods_workers_fits_its_prefix_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kubegrid run-shard`` spreading one shard over forked workers: the
    slices cut units, yet each unit's prefix is fitted once; the reduced
    results equal GridSearchCV's."""
    data = write_dataset(tmp_path, "wine")
    document = _document(data, tmp_path, 3, sharding={"shards": 1})
    path = write_manifest(tmp_path, document)
    plan = planning.make_plan(specs.parse(document).spec, n_splits=SPLITS)
    units = len(_units(plan, plan.order))
    # The shard runner cuts its tasks into one contiguous slice per worker:
    # four slices of 18 tasks in units of 3 cut three units.
    slices = np.array_split(plan.task_ids(0), 4)
    assert sum(len(_units(plan, s)) for s in slices) > units == 6
    log = tmp_path / "fits.log"
    monkeypatch.setenv(FIT_LOG_ENV, str(log))

    argv = ["run-shard", str(path), "--index", "0", "--workers", "4"]
    assert cli.main(argv) == 0

    assert fits(log) == units, log.read_text()
    assert cli.main(["reduce", str(path)]) == 0
    assert fits(log) == units + 1, log.read_text()
    monkeypatch.delenv(FIT_LOG_ENV)
    ours = read_outcome(tmp_path / "out")
    assert_same_search(ours, _scikit_learn(data, 3), data.X)


def test_a_prefix_returning_two_layouts_is_fitted_once_per_split(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PCA hands its final step a column-major output to fit and a row-major
    one to score; both reach the final step as they left PCA, and PCA is still
    fitted once per split, not once per candidate."""
    data = write_dataset(tmp_path, "wine")
    grid = {"clf__C": [0.01, 0.1, 1.0, 10.0]}
    document = manifest(
        data,
        tmp_path / "out",
        estimator={
            "pipeline": [
                {
                    "name": "pca",
                    "class": "tests.support.counting.CountingPCA",
                    "params": {"n_components": 5},
                },
                {
                    "name": "clf",
                    "class": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 5000},
                },
            ]
        },
        param_grid=grid,
        cv=SPLITS,
        sharding={"shards": 1},
    )
    log = tmp_path / "fits.log"
    monkeypatch.setenv(FIT_LOG_ENV, str(log))

    path = write_manifest(tmp_path, document)
    assert cli.main(["run", str(path), "--quiet", "--workers", "1"]) == 0

    # One fit per split, and the reducer's refit of the best candidate.
    assert fits(log) == SPLITS + 1, log.read_text()
    monkeypatch.delenv(FIT_LOG_ENV)
    pipeline = Pipeline(
        [("pca", PCA(n_components=5)), ("clf", LogisticRegression(max_iter=5000))]
    )
    search = GridSearchCV(pipeline, grid, cv=SPLITS).fit(data.X, data.y)
    assert_same_search(read_outcome(tmp_path / "out"), search, data.X)
