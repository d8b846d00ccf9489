"""Planning is pure: the same spec gives the same candidates, tasks and shards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.model_selection import ParameterGrid

from kubegrid import costs, planning
from kubegrid import spec as specs
from kubegrid.errors import SpecError


def make_spec(**overrides: Any) -> specs.GridSearchSpec:
    document: dict[str, Any] = {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": "plan"},
        "spec": {
            "dataset": {"uri": "data.csv", "target": "y"},
            "estimator": {"class": "sklearn.svm.SVC"},
            "paramGrid": {"C": [1, 10, 100], "gamma": [0.1, 0.01]},
            "output": {"uri": "out"},
        }
        | overrides,
    }
    return specs.parse(document).spec


def test_candidates_follow_scikit_learn_order() -> None:
    """Grid candidates come in ParameterGrid's order, with the YAML's types."""
    spec = make_spec()
    assert planning.candidates(spec) == list(ParameterGrid(spec.param_grid))


@pytest.mark.parametrize("shards", [1, 3, 7, 30, 31])
def test_every_task_lands_in_exactly_one_shard(shards: int) -> None:
    """Shards partition the task ids: none lost, none repeated."""
    plan = planning.make_plan(make_spec(), n_splits=5, n_shards=shards)
    seen = np.concatenate([plan.task_ids(i) for i in range(plan.n_shards)])
    assert sorted(seen.tolist()) == list(range(plan.n_tasks))
    if plan.n_tasks >= shards:
        assert all(len(plan.task_ids(i)) >= 1 for i in range(plan.n_shards))


def test_same_spec_same_plan() -> None:
    """Two plans of one spec are identical, shard by shard."""
    first = planning.make_plan(make_spec(), n_splits=5, n_shards=4)
    second = planning.make_plan(make_spec(), n_splits=5, n_shards=4)
    assert first.candidates == second.candidates
    assert np.array_equal(first.order, second.order)
    assert np.array_equal(first.bounds, second.bounds)


def test_shards_group_tasks_sharing_a_pipeline_prefix() -> None:
    """Candidates with the same prefix params sit together, split by split."""
    spec = make_spec(
        estimator={
            "pipeline": [
                {"name": "pca", "class": "sklearn.decomposition.PCA"},
                {"name": "svc", "class": "sklearn.svm.SVC"},
            ]
        },
        paramGrid={"pca__n_components": [5, 10], "svc__C": [1, 10, 100, 1000]},
    )
    plan = planning.make_plan(spec, n_splits=3, n_shards=4)
    prefix_fits = 0
    for shard in range(plan.n_shards):
        pairs = {
            (plan.candidates[c]["pca__n_components"], s) for c, s in plan.tasks(shard)
        }
        prefix_fits += len(pairs)
    # 6 (prefix, split) pairs of 4 tasks cut into 4 shards: each cut between
    # shards costs at most one extra prefix fit, never one per task.
    assert prefix_fits <= 6 + plan.n_shards - 1


def _prefix_fits(plan: planning.Plan) -> int:
    """How many (prefix, split) fits the shards of ``plan`` make in all."""
    return sum(
        len({(plan.candidates[c]["pca__n_components"], s) for c, s in plan.tasks(i)})
        for i in range(plan.n_shards)
    )


def test_cuts_move_onto_prefix_units_when_near() -> None:
    """A cut near a (prefix, split) boundary lands on it, saving a prefix fit."""
    spec = make_spec(
        estimator={
            "pipeline": [
                {"name": "pca", "class": "sklearn.decomposition.PCA"},
                {"name": "clf", "class": "sklearn.linear_model.LogisticRegression"},
            ]
        },
        paramGrid={"pca__n_components": [5], "clf__C": list(range(1, 25))},
    )
    plan = planning.make_plan(spec, n_splits=5, n_shards=8)
    unsnapped = planning.shard_bounds(np.ones(plan.n_tasks), plan.n_shards)
    units = np.arange(0, plan.n_tasks + 1, 24)  # 5 units of 24 tasks

    # Each cut moved at most half its smaller neighbour, onto a unit start
    # whenever one was that close.
    sizes = np.diff(unsnapped)
    for i in range(1, plan.n_shards):
        slack = min(sizes[i - 1], sizes[i]) // 2
        moved = plan.bounds[i] - unsnapped[i]
        assert abs(moved) <= slack
        if np.min(np.abs(units - unsnapped[i])) <= slack:
            assert plan.bounds[i] in units, (i, plan.bounds)
    assert np.all(np.diff(plan.bounds) >= 1)
    baseline = planning.Plan(
        plan.candidates, plan.n_splits, plan.n_shards, plan.order, unsnapped
    )
    assert _prefix_fits(plan) < _prefix_fits(baseline)


@pytest.mark.parametrize("shards", [2, 5, 9, 40, 119, 120])
def test_snapped_cuts_still_partition_the_tasks(shards: int) -> None:
    """Snapping never empties a shard nor drops or repeats a task."""
    spec = make_spec(
        estimator={
            "pipeline": [
                {"name": "pca", "class": "sklearn.decomposition.PCA"},
                {"name": "svc", "class": "sklearn.svm.SVC"},
            ]
        },
        paramGrid={"pca__n_components": [2, 3, 4], "svc__C": [1, 10, 100, 1000]},
    )
    plan = planning.make_plan(spec, n_splits=10, n_shards=shards)
    seen = np.concatenate([plan.task_ids(i) for i in range(plan.n_shards)])
    assert sorted(seen.tolist()) == list(range(plan.n_tasks))
    assert all(len(plan.task_ids(i)) >= 1 for i in range(plan.n_shards))


def _shard_costs(plan: planning.Plan, cost: dict[int, float]) -> list[float]:
    return [sum(cost[c] for c, _ in plan.tasks(i)) for i in range(plan.n_shards)]


def test_shards_are_cut_by_expected_cost_not_task_count() -> None:
    """A forest of 1000 trees costs a shard as much as 100 forests of 10: the
    shards' expected costs, not their task counts, shrink towards the tail."""
    spec = make_spec(
        estimator={"class": "sklearn.ensemble.RandomForestClassifier"},
        paramGrid={"n_estimators": [10, 30, 100, 300, 1000], "max_features": [1, 2]},
    )
    plan = planning.make_plan(spec, n_splits=5, n_shards=4)
    trees = {i: float(p["n_estimators"]) for i, p in enumerate(plan.candidates)}

    shard_costs = _shard_costs(plan, trees)
    weights = np.linspace(1.0, planning.TAIL_RATIO, plan.n_shards)
    wanted = weights / weights.sum() * sum(shard_costs)
    # Each shard is within one 1000-tree task of its share.
    assert np.all(np.abs(np.array(shard_costs) - wanted) <= 1000)
    by_count = planning.Plan(
        plan.candidates,
        plan.n_splits,
        plan.n_shards,
        plan.order,
        planning.shard_bounds(np.ones(plan.n_tasks), plan.n_shards),
    )
    miss = np.abs(np.array(shard_costs) - wanted).max()
    assert miss < np.abs(np.array(_shard_costs(by_count, trees)) - wanted).max()


def test_every_shard_samples_the_whole_grid() -> None:
    """Costs no parameter name reveals still cluster in grid order (the first
    key varies slowest); every shard gets candidates from all over the grid."""
    spec = make_spec(paramGrid={"C": list(range(10)), "gamma": list(range(10))})
    plan = planning.make_plan(spec, n_splits=2, n_shards=8)
    for shard in range(plan.n_shards):
        for key in ("C", "gamma"):
            values = [plan.candidates[c][key] for c, _ in plan.tasks(shard)]
            # A shard of 18-30 tasks sees most of the ten values, centred.
            assert len(set(values)) >= 7, (shard, key, values)
            assert 2.5 <= np.mean(values) <= 6.5, (shard, key, values)


def test_unlimited_depth_counts_as_the_deepest() -> None:
    """``max_depth: None`` is dearer than any finite depth in the grid; a
    value that is not a count says nothing and costs a typical amount."""
    params = [{"max_depth": 2}, {"max_depth": 8}, {"max_depth": None}, {}]
    cost = costs.estimate(params, ["max_depth"])
    assert cost[0] < cost[1] < cost[2]
    assert cost[3] == pytest.approx((cost[0] + cost[1]) / 2)
    assert np.all(costs.estimate(params, ["C"]) == 1.0)


def test_random_search_is_reproducible_and_seeded() -> None:
    """A seeded random search samples the same candidates in every process."""
    grid = {"C": {"distribution": "loguniform", "a": 0.001, "b": 1000}}
    spec = make_spec(
        paramGrid=grid, search={"type": "random", "nIter": 7, "randomState": 3}
    )
    first, second = planning.candidates(spec), planning.candidates(spec)
    assert first == second
    assert len(first) == 7
    assert all(0.001 <= c["C"] <= 1000 for c in first)


def test_grid_over_the_limit_is_rejected_before_listing() -> None:
    """A runaway grid names the limit and how to raise it."""
    spec = make_spec(
        paramGrid={"C": list(range(1000)), "gamma": list(range(1000))},
        search={"maxCandidates": 1000},
    )
    with pytest.raises(SpecError) as caught:
        planning.candidates(spec)
    assert caught.value.field == "spec.paramGrid"
    assert "maxCandidates" in caught.value.message


def test_a_million_tasks_plan_without_per_task_objects() -> None:
    """10^6 tasks plan into index arrays, not a million Python objects."""
    spec = make_spec(
        paramGrid={"C": list(range(1000)), "gamma": list(range(200))},
        sharding={"shards": 500},
        search={"maxCandidates": 200_000},
    )
    plan = planning.make_plan(spec, n_splits=5)
    assert plan.n_tasks == 1_000_000
    assert plan.order.dtype == np.int64 and len(plan.order) == plan.n_tasks
    sizes = np.diff(plan.bounds)
    assert sizes.sum() == plan.n_tasks
    # Later shards are smaller, so the tail of a search is short.
    assert sizes[0] > sizes[-1] > 0
    assert np.all(np.diff(sizes) <= 1)


def test_fingerprint_ignores_resources_but_not_the_grid() -> None:
    """Resources never change a score; the grid always does."""
    base = planning.fingerprint(make_spec(), "sum", {"scikit-learn": "1"})
    more_pods = planning.fingerprint(
        make_spec(parallelism=9), "sum", {"scikit-learn": "1"}
    )
    other_grid = planning.fingerprint(
        make_spec(paramGrid={"C": [1]}), "sum", {"scikit-learn": "1"}
    )
    assert base == more_pods
    assert base != other_grid
