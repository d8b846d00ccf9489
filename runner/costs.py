"""What a candidate's fit is expected to cost, relative to the others.

Called by planning, in every process that plans: the CLI, each pod and the
operator. The operator must never import a user's code, so a cost is read from
parameter names and values alone, never from the estimator.

Two tools, because few costs can be known ahead:

* :func:`estimate` scales a candidate by the few parameters whose cost is
  close to proportional to their value whatever the estimator: one more tree
  per ``n_estimators``, one more pass over the rows per level of
  ``max_depth``, an iteration budget in ``max_iter``. Every other parameter
  counts as 1.
* :func:`spread` shuffles candidates so that any run of neighbours samples
  the whole grid. Costs that no name reveals (an SVC's ``C`` and ``gamma``) still
  cluster in grid order, since ParameterGrid varies one key slowly: spread
  out, they land in every shard alike instead of all in one.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

# Parameters, by their name within the step, whose fit cost grows about in
# proportion to their value.
PROPORTIONAL = frozenset({"n_estimators", "max_depth", "max_iter", "max_leaf_nodes"})

# Any constant will do; it only has to be the same in every process.
SPREAD_SEED = 20261204

# ``max_depth: None`` grows a tree until its leaves are pure: counted as this
# many times the deepest finite depth the grid tries.
UNLIMITED_DEPTH_FACTOR = 2.0


def estimate(params: list[dict[str, Any]], names: Iterable[str]) -> np.ndarray:
    """Each candidate's expected cost, with mean 1.

    ``names`` are the grid's parameter names: when none of them is a
    proportional one, every cost is 1 without looking at each candidate.
    """
    costly = sorted({n for n in names if _base(n) in PROPORTIONAL})
    cost = np.ones(len(params))
    for name in costly:
        values = [p.get(name, _ABSENT) for p in params]
        unlimited = _base(name) in {"max_depth", "max_leaf_nodes"}
        cost *= _factor(values, unlimited)
    return cost / cost.mean() if len(cost) else cost


def spread(n: int) -> np.ndarray:
    """A fixed permutation of ``range(n)`` whose windows sample all of it.

    A seeded shuffle: unlike a stride or a bit reversal, no grid shape (a
    key varying slowly, another quickly, a list of grids) can line up with
    it, so each run of neighbours draws from every corner of the grid. The
    seed is a constant, so every process plans the same permutation.
    """
    return np.random.default_rng(SPREAD_SEED).permutation(n).astype(np.int64)


_ABSENT = object()


def _base(name: str) -> str:
    """The parameter's own name: ``clf__max_depth`` is ``max_depth``."""
    return name.rpartition("__")[2]


def _factor(values: list[Any], unlimited: bool) -> np.ndarray:
    """Per-candidate multipliers for one parameter; 1 where it says nothing."""
    numeric = [_positive_number(v) for v in values]
    finite = [v for v in numeric if v is not None]
    largest = max(finite, default=1.0)
    typical = float(np.median(finite)) if finite else 1.0
    factor = np.ones(len(values))
    for i, (raw, value) in enumerate(zip(values, numeric, strict=True)):
        if value is not None:
            factor[i] = value
        elif raw is None and unlimited and finite:
            factor[i] = largest * UNLIMITED_DEPTH_FACTOR
        else:
            # Absent from this candidate (a list of grids) or not a count:
            # nothing is known, so it counts as a typical value of the grid.
            factor[i] = typical
    return factor


def _positive_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if number > 0 else None
