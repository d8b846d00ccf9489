"""Admission: a bad spec is refused with the field named; a good one is sized."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from kubegrid import planning
from kubegrid.errors import SpecError
from kubegrid.operator import sizing

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_digits_search_is_sized_like_the_runner_sizes_it(spec: dict[str, Any]) -> None:
    manifest, plan = sizing.admit("digits", "ml", spec)
    assert (plan.n_candidates, plan.n_splits, plan.n_tasks) == (20, 5, 100)
    assert plan.n_shards == planning.shard_count(manifest.spec, 100)
    assert "20 candidates × 5 splits = 100 fits" in plan.describe()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"estimator": {"class": "sklearn.svm.SVX"}}, "spec.estimator.class"),
        ({"scoring": "acuracy"}, "spec.scoring"),
        ({"paramGrid": {"C": []}}, "spec.paramGrid.C"),
        ({"paramGrid": {"Cee": [1.0]}}, "spec.paramGrid.Cee"),
        ({"parallelism": 0}, "spec.parallelism"),
        ({"unknownField": 1}, "spec.unknownField"),
        ({"search": {"maxCandidates": 3}}, "spec.paramGrid"),
        ({"paramGrid": {"C": [1.0, -1.0]}}, "spec.paramGrid.C"),
        (
            {"estimator": {"class": "sklearn.svm.SVC", "params": {"kernel": "rbff"}}},
            "spec.estimator.params.kernel",
        ),
        (
            {
                "search": {"type": "random", "nIter": 3, "randomState": 0},
                "paramGrid": {"kernel": ["lnear"]},
            },
            "spec.paramGrid.kernel",
        ),
    ],
)
def test_bad_spec_is_refused_naming_the_field(
    spec: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    spec.update(change)
    with pytest.raises(SpecError) as caught:
        sizing.admit("digits", "ml", spec)
    assert caught.value.field == field


def test_a_name_too_long_for_its_children_is_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as caught:
        sizing.admit("x" * 60, "ml", spec)
    assert caught.value.field == "metadata.name"


def test_user_named_modules_are_never_imported(spec: dict[str, Any]) -> None:
    """A class outside scikit-learn is left for the pods to import."""
    spec["estimator"] = {"class": "kubegrid_never_imported_pkg.Model"}
    spec["paramGrid"] = {"alpha": [1, 2, 3]}
    _, plan = sizing.admit("custom", "ml", spec)
    assert plan.n_candidates == 3
    assert "kubegrid_never_imported_pkg" not in sys.modules


def test_split_count_left_to_the_data_still_gives_a_shard_count(
    spec: dict[str, Any],
) -> None:
    spec["cv"] = {"splitter": "LeaveOneGroupOut"}
    spec["dataset"]["groups"] = "group"
    spec["sharding"] = {"shards": 6}
    _, plan = sizing.admit("groups", "ml", spec)
    assert (plan.n_splits, plan.n_tasks, plan.n_shards) == (None, None, 6)


@pytest.mark.parametrize("n_shards", [1, 3, 7, 16])
@pytest.mark.parametrize("example", ["digits-svc.yaml", "pipeline-random.yaml"])
def test_shard_tasks_match_the_runners_plan(example: str, n_shards: int) -> None:
    """The operator counts each shard's tasks from the cut every pod makes."""
    raw = yaml.safe_load((EXAMPLES / example).read_text())
    manifest, sized = sizing.admit("cut", "ml", raw["spec"])
    assert sized.n_splits is not None
    runners = planning.make_plan(
        manifest.spec, sized.n_splits, n_shards, planning.candidates(manifest.spec)
    )

    plan = sizing.shard_plan(raw["spec"], n_shards)

    assert plan is not None and plan.tasks is not None
    assert list(plan.tasks) == [int(n) for n in np.diff(runners.bounds)]
    assert sum(plan.tasks) == sized.n_tasks
    assert sum(plan.costs) == pytest.approx(1.0)
