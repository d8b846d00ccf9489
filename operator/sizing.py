"""Admission of a GridSearch: validate it and size its plan, importing no user code.

Called by :mod:`kubegrid.operator.reconcile` when a GridSearch appears, and by
:mod:`kubegrid.operator.status` to turn completed indexes into task counts and
expected costs. Validation and planning are the runner's own
(:func:`kubegrid.spec.parse`, :func:`kubegrid.estimators.check_statically`,
:func:`kubegrid.planning.make_plan`), so the operator and the pods never
disagree on what is valid or on which tasks a shard runs; whatever needs the
data or an import of a user-named module is left to the pods, which report
back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
from kubernetes.client import V1Affinity, V1Toleration

from kubegrid import costs, estimators, planning
from kubegrid import spec as specs
from kubegrid.errors import SpecError
from kubegrid.operator import jobs

# Kubernetes object names (and the job-name label on pods) stop at 63
# characters; the longest child name adds this suffix to the search's name.
_NAME_LIMIT = 63 - len("-shards")


@dataclass(frozen=True)
class Sizing:
    """The plan's dimensions as far as the spec alone decides them.

    ``n_splits`` and ``n_tasks`` are None when the data decides the split
    count (LeaveOneGroupOut); the shard count is always known.
    """

    n_candidates: int
    n_splits: int | None
    n_shards: int

    @property
    def n_tasks(self) -> int | None:
        return None if self.n_splits is None else self.n_candidates * self.n_splits

    def describe(self) -> str:
        """'20 candidates × 5 splits = 100 fits in 16 shards'."""
        shards = f"in {self.n_shards} shards"
        if self.n_splits is None:
            return f"{self.n_candidates} candidates, splits from the data, {shards}"
        return (
            f"{self.n_candidates} candidates × {self.n_splits} splits = "
            f"{self.n_tasks} fits {shards}"
        )


def admit(
    name: str, namespace: str, raw_spec: Mapping[str, Any]
) -> tuple[specs.GridSearch, Sizing]:
    """Parse and check a stored GridSearch; size its plan.

    Raises SpecError naming the first bad field.
    """
    manifest = _parse(name, namespace, raw_spec)
    if len(name) > _NAME_LIMIT:
        raise SpecError(
            "metadata.name",
            f"{name!r} is {len(name)} characters; the Job "
            f"{jobs.shard_job_name(name)!r} must fit in 63, so use at most "
            f"{_NAME_LIMIT}",
        )
    # A random search's candidates are drawn once, for both the checks and
    # the size.
    spec = manifest.spec
    drawn = planning.candidates(spec) if spec.search.type == "random" else None
    estimators.check_statically(spec, drawn)
    check_pod(spec.pod)
    return manifest, size(spec, drawn)


def check_pod(pod: specs.Pod) -> None:
    """The PodSpec fields spec.pod passes through, checked by the client's models.

    The manifest model keeps tolerations and affinity open; checked only when
    the Job is created, a typo there would fail every retry of the creation
    and leave the search Pending for good.
    """
    fields: list[tuple[str, type[pydantic.BaseModel], dict[str, Any]]] = [
        (f"spec.pod.tolerations[{i}]", V1Toleration, t)
        for i, t in enumerate(pod.tolerations)
    ]
    if pod.affinity:
        fields.append(("spec.pod.affinity", V1Affinity, pod.affinity))
    for field, model, value in fields:
        try:
            model.model_validate(value)
        except pydantic.ValidationError as exc:
            error = exc.errors()[0]
            if error["type"] == "extra_forbidden":
                error["msg"] = "unknown field"
            where = "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]
            )
            raise SpecError(
                f"{field}{where}",
                f"{error['msg']} (got {error['input']!r}); write it as in a PodSpec",
            ) from None


def size(
    spec: specs.GridSearchSpec, candidates: list[dict[str, Any]] | None = None
) -> Sizing:
    """Candidates, splits and shards, with the runner's limits enforced.

    ``candidates``: the search's candidates, when the caller has listed them.
    """
    # planning.candidates applies the empty-grid and maxCandidates checks the
    # runner applies; a grid within the limit is cheap to list.
    if candidates is None:
        candidates = planning.candidates(spec)
    n_candidates = len(candidates)
    n_splits = planning.n_splits_hint(spec)
    n_tasks = None if n_splits is None else n_candidates * n_splits
    return Sizing(n_candidates, n_splits, planning.shard_count(spec, n_tasks))


@dataclass(frozen=True)
class ShardPlan:
    """What each shard of a search runs, as far as the operator can know it.

    ``tasks`` holds each shard's task count, None when the data decides the
    split count (LeaveOneGroupOut); ``costs`` each shard's share of the
    search's expected cost (:mod:`kubegrid.costs`), summing to 1.
    """

    tasks: tuple[int, ...] | None
    costs: tuple[float, ...]


def shard_plan(raw_spec: Mapping[str, Any], n_shards: int) -> ShardPlan | None:
    """The search cut into ``n_shards`` exactly as every pod cuts it.

    None when the spec does not plan (admission refused it). A plan of 10^5
    candidates takes a fraction of a second, and every event of the shard Job
    asks for it, so plans are kept per (spec, shard count): a spec cannot
    change after creation except for ``suspend``, which no plan reads.
    """
    spec = {k: v for k, v in raw_spec.items() if k != "suspend"}
    return _shard_plan(json.dumps(spec, sort_keys=True), n_shards)


def planned_shares(n_shards: int) -> tuple[float, ...]:
    """Each shard's share of the expected cost that the cut aims at.

    :func:`kubegrid.planning.shard_bounds` weighs shard i linearly from 1 down
    to ``TAIL_RATIO`` for the last; a real cut misses these by at most a task
    and a snap to a unit boundary.
    """
    if n_shards <= 1:
        return (1.0,) * n_shards
    weights = np.linspace(1.0, planning.TAIL_RATIO, n_shards)
    return tuple(float(w) for w in weights / weights.sum())


# A few dozen searches at once is a busy operator; each entry is two numbers
# per shard.
@functools.lru_cache(maxsize=64)
def _shard_plan(spec_json: str, n_shards: int) -> ShardPlan | None:
    try:
        spec = _parse("plan", None, json.loads(spec_json)).spec
        n_splits = planning.n_splits_hint(spec)
        if n_splits is None:
            return ShardPlan(None, planned_shares(n_shards))
        params = planning.candidates(spec)
        plan = planning.make_plan(spec, n_splits, n_shards, candidate_params=params)
    except SpecError:
        return None

    # The costs the plan was cut by, summed per shard through a running total
    # (an empty shard then costs 0).
    expected = costs.estimate(params, _grid_names(spec.param_grid))
    running = np.concatenate([[0.0], np.cumsum(expected[plan.order // n_splits])])
    shard_costs = running[plan.bounds[1:]] - running[plan.bounds[:-1]]
    shares = shard_costs / max(float(shard_costs.sum()), 1e-12)
    return ShardPlan(
        tuple(int(n) for n in np.diff(plan.bounds)),
        tuple(float(c) for c in shares),
    )


def _grid_names(grid: dict[str, Any] | list[dict[str, Any]]) -> set[str]:
    grids = grid if isinstance(grid, list) else [grid]
    return {name for one in grids for name in one}


def _parse(
    name: str, namespace: str | None, raw_spec: Mapping[str, Any]
) -> specs.GridSearch:
    return specs.parse(
        {
            "apiVersion": specs.API_VERSION,
            "kind": specs.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": dict(raw_spec),
        }
    )
