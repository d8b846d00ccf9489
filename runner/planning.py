"""Planning: from a spec to candidates, tasks and shards, as pure functions.

Called by the CLI, every shard pod, the reducer and the operator. Given the same
spec (and, for the split count, the same data) every process computes the same
plan, so a pod needs nothing but the manifest and its completion index.

Vocabulary follows scikit-learn: a *candidate* is one parameter setting, a
*split* one train/test fold, a *task* one (candidate, split) fit. Task ids are
``candidate * n_splits + split``, the order of GridSearchCV's own loop. A
*shard* is one Job completion index: a contiguous run of tasks in *shard
order*, which groups the tasks sharing a split and a pipeline prefix so that a
shard can fit the prefix once and reuse it, and within each group spreads the
candidates over the grid. Shards are cut by expected cost
(:mod:`kubegrid.costs`), shrinking towards the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats
from sklearn.model_selection import ParameterGrid, ParameterSampler

from kubegrid import costs
from kubegrid import spec as specs
from kubegrid.errors import SpecError

# Each parallel slot gets a few shards over a search's life, so that a slow
# shard does not hold up the tail, but not many: every shard pays a pod start,
# a data load and, for pipelines, one more fit of the shared prefix.
SHARDS_PER_SLOT = 2

# Shard sizes shrink linearly from the first to the last by this factor, so the
# shards still running at the end are the short ones.
TAIL_RATIO = 0.5


@dataclass(frozen=True)
class Plan:
    """Which task runs in which shard.

    ``order`` lists task ids in shard order; shard ``i`` runs
    ``order[bounds[i]:bounds[i + 1]]``.
    """

    candidates: list[dict[str, Any]]
    n_splits: int
    n_shards: int
    order: np.ndarray
    bounds: np.ndarray

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    @property
    def n_tasks(self) -> int:
        return self.n_candidates * self.n_splits

    def task_ids(self, shard: int) -> np.ndarray:
        """The task ids shard ``shard`` runs, in the order it runs them."""
        if not 0 <= shard < self.n_shards:
            raise SpecError(
                "--index",
                f"shard {shard} is out of range: the plan has "
                f"{self.n_shards} shards (0 to {self.n_shards - 1})",
            )
        return self.order[self.bounds[shard] : self.bounds[shard + 1]]

    def tasks(self, shard: int) -> Iterator[tuple[int, int]]:
        """(candidate, split) pairs of one shard."""
        for task in self.task_ids(shard).tolist():
            yield divmod(task, self.n_splits)

    @property
    def id(self) -> str:
        """Names this cut of the search: equal plans, equal ids."""
        digest = hashlib.sha256(self.order.tobytes())
        digest.update(self.bounds.tobytes())
        return digest.hexdigest()[:12]

    def shard_of_tasks(self) -> np.ndarray:
        """For each task id, the shard that runs it."""
        owner = np.empty(self.n_tasks, dtype=np.int32)
        for shard in range(self.n_shards):
            owner[self.task_ids(shard)] = shard
        return owner


def count_candidates(spec: specs.GridSearchSpec) -> int:
    """How many candidates the search has, without listing them."""
    if spec.search.type == "random":
        grid_size = _grid_size_if_all_lists(spec.param_grid)
        return (
            spec.search.n_iter
            if grid_size is None
            else min(spec.search.n_iter, grid_size)
        )
    _check_grid_values(spec.param_grid)
    return len(ParameterGrid(spec.param_grid))


def candidates(spec: specs.GridSearchSpec) -> list[dict[str, Any]]:
    """Candidate params in the order GridSearchCV / RandomizedSearchCV use."""
    n = count_candidates(spec)
    if n == 0:
        raise SpecError("spec.paramGrid", "the grid has no candidates")
    if n > spec.search.max_candidates and spec.search.type == "random":
        raise SpecError(
            "spec.search.nIter",
            f"nIter asks for {n} candidates, over the limit of "
            f"{spec.search.max_candidates}; lower nIter or raise "
            "search.maxCandidates",
        )
    if n > spec.search.max_candidates:
        raise SpecError(
            "spec.paramGrid",
            f"the grid has {n} candidates, over the limit of "
            f"{spec.search.max_candidates}; shrink the grid, use search.type: random"
            " with nIter, or raise search.maxCandidates",
        )
    if spec.search.type == "grid":
        return list(ParameterGrid(spec.param_grid))
    sampler = ParameterSampler(
        distributions(spec.param_grid),
        n_iter=spec.search.n_iter,
        random_state=spec.search.random_state,
    )
    # A grid of lists smaller than nIter is searched whole, with scikit-learn's
    # warning; the search's own note (see small_random_space) replaces it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The total space of parameters")
        return list(sampler)


def small_random_space(spec: specs.GridSearchSpec, n_candidates: int) -> str | None:
    """A note when a random search has fewer candidates than nIter asked for."""
    if spec.search.type != "random" or n_candidates >= spec.search.n_iter:
        return None
    return (
        f"spec.search.nIter asks for {spec.search.n_iter} candidates but the grid "
        f"lists only {n_candidates} combinations; all {n_candidates} are searched, "
        "as RandomizedSearchCV does"
    )


def distributions(grid: dict[str, Any] | list[dict[str, Any]]) -> Any:
    """The grid with each ``{distribution: ...}`` mapping made a scipy object."""
    if isinstance(grid, list):
        return [
            _distributions_of(one, f"spec.paramGrid[{i}]") for i, one in enumerate(grid)
        ]
    return _distributions_of(grid, "spec.paramGrid")


def _distributions_of(grid: dict[str, Any], field: str) -> dict[str, Any]:
    converted = {}
    for name, value in grid.items():
        if isinstance(value, dict):
            converted[name] = _distribution(value, f"{field}.{name}")
        elif isinstance(value, list) and value:
            converted[name] = value
        else:
            raise SpecError(
                f"{field}.{name}",
                f"expected a non-empty list of values or a {{distribution: ...}} "
                f"mapping, got {value!r}",
            )
    return converted


def _distribution(value: dict[str, Any], field: str) -> Any:
    kwargs = dict(value)
    name = kwargs.pop("distribution", None)
    if not isinstance(name, str) or name not in specs.DISTRIBUTIONS:
        raise SpecError(
            f"{field}.distribution",
            f"unknown distribution {name!r}; use one of "
            f"{', '.join(specs.DISTRIBUTIONS)} (scipy.stats names)",
        )
    allowed = specs.DISTRIBUTIONS[name]
    for key, argument in kwargs.items():
        if key not in allowed:
            raise SpecError(
                f"{field}.{key}",
                f"scipy.stats.{name} takes {', '.join(allowed)}, not {key!r}",
            )
        # Every argument of these distributions is one number; scipy meets
        # anything else (a list, null) with errors of every kind.
        if isinstance(argument, bool) or not isinstance(argument, int | float):
            raise SpecError(
                f"{field}.{key}",
                f"scipy.stats.{name} needs a number for {key}, got {argument!r}",
            )
    try:
        frozen = getattr(scipy.stats, name)(**kwargs)
        # scipy checks the arguments only when sampling: draw once now, so a
        # bad one (loguniform with a <= 0) is named here, not in a traceback.
        frozen.rvs(random_state=0)
    except (TypeError, ValueError) as exc:
        raise SpecError(field, f"scipy.stats.{name}({kwargs}) failed: {exc}") from None
    return frozen


def _check_grid_values(grid: dict[str, Any] | list[dict[str, Any]]) -> None:
    """A grid search needs a non-empty list for every parameter."""
    grids = grid if isinstance(grid, list) else [grid]
    for i, one in enumerate(grids):
        field = f"spec.paramGrid[{i}]" if isinstance(grid, list) else "spec.paramGrid"
        if not one and not isinstance(grid, list):
            raise SpecError(
                field,
                "the grid is empty; give each parameter to search a list of values",
            )
        for name, value in one.items():
            if isinstance(value, dict) and "distribution" in value:
                raise SpecError(
                    f"{field}.{name}",
                    "distributions need search.type: random (with nIter); a grid "
                    "search takes a list of values",
                )
            if value == []:
                raise SpecError(
                    f"{field}.{name}",
                    "expected a non-empty list of values, got []; give at least "
                    "one value, or remove the parameter to keep its default",
                )
            if not isinstance(value, list):
                raise SpecError(
                    f"{field}.{name}",
                    f"expected a non-empty list of values, got {value!r}; "
                    f"write [{value!r}] for a single value",
                )


def _grid_size_if_all_lists(grid: dict[str, Any] | list[dict[str, Any]]) -> int | None:
    grids = grid if isinstance(grid, list) else [grid]
    if all(isinstance(v, list) for one in grids for v in one.values()):
        return sum(math.prod(len(v) for v in one.values()) for one in grids)
    return None


def n_splits_hint(spec: specs.GridSearchSpec) -> int | None:
    """The split count known from the spec alone; None when the data decides."""
    cv = spec.cv
    if isinstance(cv, int):
        return cv
    if cv.splitter == "LeaveOneGroupOut":
        return None
    n_splits = cv.n_splits or (4 if cv.splitter == "TimeSeriesSplit" else 5)
    if cv.splitter.startswith("Shuffle") or "ShuffleSplit" in cv.splitter:
        n_splits = cv.n_splits or 10
    if cv.splitter.startswith("Repeated"):
        n_splits *= cv.n_repeats or 10
    return n_splits


def shard_count(spec: specs.GridSearchSpec, n_tasks: int | None) -> int:
    """How many shards to cut ``n_tasks`` into (None: unknown until data)."""
    sharding = spec.sharding
    if sharding.shards is not None:
        wanted = sharding.shards
    elif sharding.tasks_per_shard is not None and n_tasks is not None:
        wanted = math.ceil(n_tasks / sharding.tasks_per_shard)
    else:
        wanted = spec.parallelism * SHARDS_PER_SLOT
    return max(1, min(wanted, n_tasks)) if n_tasks else max(1, wanted)


def make_plan(
    spec: specs.GridSearchSpec,
    n_splits: int,
    n_shards: int | None = None,
    candidate_params: list[dict[str, Any]] | None = None,
) -> Plan:
    """The whole plan; ``n_shards`` defaults to :func:`shard_count`."""
    params = candidates(spec) if candidate_params is None else candidate_params
    n_tasks = len(params) * n_splits
    shards = shard_count(spec, n_tasks) if n_shards is None else n_shards
    final_step = _final_step(spec)
    groups = _prefix_groups(params, final_step)
    order = _shard_order(groups, n_splits, costs.spread(len(params)))

    # Shards are cut by expected cost, not task count, so that a shard of
    # deep forests is as short as one of shallow ones.
    expected = costs.estimate(params, _grid_names(spec.param_grid))
    bounds = shard_bounds(expected[order // n_splits], shards)
    if final_step is not None:
        bounds = snap_to_units(bounds, unit_starts(order, groups, n_splits))
    return Plan(params, n_splits, shards, order, bounds)


def shard_bounds(task_costs: np.ndarray, n_shards: int) -> np.ndarray:
    """Where each shard starts in shard order, plus the end; costs shrink.

    ``task_costs`` are the expected costs of the tasks in shard order. Shard
    ``i`` gets a share of the total that falls linearly to ``TAIL_RATIO`` of
    the first shard's by the last; a cut falls between the two tasks nearest
    its target. Every shard gets at least one task when there are enough to
    go round.
    """
    n_tasks = len(task_costs)
    weights = np.linspace(1.0, TAIL_RATIO, n_shards) if n_shards > 1 else np.ones(1)
    targets = np.cumsum(weights)[:-1] / weights.sum() * task_costs.sum()
    # A task belongs to the shard its midpoint falls in.
    midpoints = np.cumsum(task_costs) - task_costs / 2
    inner = np.searchsorted(midpoints, targets)
    bounds = np.concatenate([[0], inner, [n_tasks]]).astype(np.int64)
    if n_tasks >= n_shards:
        # A cut can fall where another did; give each shard at least one task.
        bounds = np.maximum(bounds, np.arange(n_shards + 1))
        bounds = np.minimum(bounds, n_tasks - np.arange(n_shards, -1, -1))
    bounds[-1] = n_tasks
    return bounds


def unit_starts(order: np.ndarray, groups: np.ndarray, n_splits: int) -> np.ndarray:
    """Where each (prefix, split) unit starts in shard order, plus the end."""
    candidate, split = np.divmod(order, n_splits)
    group = groups[candidate]
    change = (group[1:] != group[:-1]) | (split[1:] != split[:-1])
    return np.concatenate([[0], np.flatnonzero(change) + 1, [len(order)]])


def snap_to_units(bounds: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Move inner cuts onto the nearest unit start, where that is near enough.

    A cut inside a (prefix, split) unit makes two shards fit that prefix.
    A cut moves by at most half the smaller of its two shards, so sizes stay
    within a factor of two of their targets and no shard becomes empty.
    """
    inner = bounds[1:-1]
    if not len(inner):
        return bounds
    sizes = np.diff(bounds)
    tolerance = np.minimum(sizes[:-1], sizes[1:]) // 2
    after = np.minimum(np.searchsorted(starts, inner), len(starts) - 1)
    before = starts[np.maximum(after - 1, 0)]
    after = starts[after]
    nearest = np.where(inner - before <= after - inner, before, after)
    snapped = bounds.copy()
    for i, (cut, target, slack) in enumerate(
        zip(inner.tolist(), nearest.tolist(), tolerance.tolist(), strict=True), 1
    ):
        # Cuts stay strictly increasing: each shard keeps at least one task.
        if abs(target - cut) <= slack and snapped[i - 1] < target < bounds[i + 1]:
            snapped[i] = target
    return snapped


def _final_step(spec: specs.GridSearchSpec) -> str | None:
    pipeline = spec.estimator.pipeline
    return pipeline[-1].name if pipeline else None


PrefixKey = tuple[tuple[str, str], ...]


def prefix_key(params: dict[str, Any], final_step: str | None) -> PrefixKey:
    """The params that change a pipeline's prefix, as a hashable key.

    Candidates with equal keys share every step before the final one, so the
    prefix fitted on a split serves them all. Without a pipeline there is no
    prefix and every candidate shares the empty key. Values are compared by
    ``repr`` so that 1, 1.0 and True stay apart, as they do for scikit-learn.
    """
    if final_step is None:
        return ()
    marker = final_step + "__"
    return tuple(
        (k, repr(v))
        for k, v in sorted(params.items())
        if not k.startswith(marker) and k != final_step
    )


def _shard_order(groups: np.ndarray, n_splits: int, spread: np.ndarray) -> np.ndarray:
    # Group by prefix, then split: contiguous cuts of this order keep a shard
    # on few (prefix, split) pairs, each fitted once. Within a pair the
    # candidates come spread over the grid, so no shard gets one corner of it.
    rank = np.empty(len(groups), dtype=np.int64)
    rank[spread] = np.arange(len(groups))
    candidate = np.repeat(np.arange(len(groups)), n_splits)
    split = np.tile(np.arange(n_splits), len(groups))
    order = np.lexsort((rank[candidate], split, groups[candidate]))
    return (candidate[order] * n_splits + split[order]).astype(np.int64)


def _grid_names(grid: dict[str, Any] | list[dict[str, Any]]) -> set[str]:
    grids = grid if isinstance(grid, list) else [grid]
    return {name for g in grids for name in g}


def _prefix_groups(params: list[dict[str, Any]], final_step: str | None) -> np.ndarray:
    """For each candidate, the number of its prefix group, in first-seen order."""
    if final_step is None:
        return np.zeros(len(params), dtype=np.int64)
    numbers: dict[PrefixKey, int] = {}
    return np.fromiter(
        (numbers.setdefault(prefix_key(p, final_step), len(numbers)) for p in params),
        dtype=np.int64,
        count=len(params),
    )


def fingerprint(
    spec: specs.GridSearchSpec, data_checksum: str, versions: dict[str, str]
) -> str:
    """Identity of a search's results: what changes a number changes this.

    Resources, sharding and scheduling are left out: they never change a score,
    so a search resumed with more pods keeps its finished work.
    """
    searched = spec.model_dump(
        mode="json",
        by_alias=True,
        include={
            "dataset",
            "estimator",
            "param_grid",
            "search",
            "cv",
            "scoring",
            "return_train_score",
            "error_score",
        },
    )
    searched["dataset"].pop("uri", None)
    payload = json.dumps(
        {"spec": searched, "data": data_checksum, "versions": versions},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
