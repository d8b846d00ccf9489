"""Summaries of repeated timings: median, spread and efficiency.

Called by the comparison and the W4 runs; pure functions over lists of floats.
"""

from __future__ import annotations

import statistics
from typing import Any


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the quartiles of ``values`` (seconds or MiB)."""
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "values": [round(v, 4) for v in values],
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
    }


def efficiency(single_core_seconds: float, cores: int, wall_seconds: float) -> float:
    """Share of the machine's limit reached: 1.0 is every core busy fitting.

    ``single_core_seconds`` is the search's fit+score work measured on one
    core without contention; the limit is ``cores × wall`` core-seconds.
    """
    return single_core_seconds / (cores * wall_seconds)
