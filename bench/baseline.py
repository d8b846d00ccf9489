"""The baseline contender and the single-core reference: GridSearchCV itself.

Run as a child process by the comparison::

    python -m bench.baseline JOB.json parallel    # GridSearchCV(n_jobs=cores)
    python -m bench.baseline JOB.json reference   # n_jobs=1, one BLAS thread

JOB.json names the CSV, the target column and the same ``estimator``,
``paramGrid``, ``cv`` and ``scoring`` blocks the kubegrid manifest carries, so
both contenders search the same grid on the same data and (scikit-learn's own
``check_cv``) the same splits. Prints one JSON line.

The reference run gives the efficiency's numerator: the sum over candidates of
``(mean_fit_time + mean_score_time) × n_splits``, the search's work on one
core with no contention.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any


def build_estimator(block: dict[str, Any]) -> Any:
    """An estimator from a manifest's ``estimator`` block (class or pipeline)."""
    if "pipeline" in block:
        from sklearn.pipeline import Pipeline

        steps = [
            (s["name"], _make(s["class"], s.get("params", {})))
            for s in block["pipeline"]
        ]
        return Pipeline(steps)
    return _make(block["class"], block.get("params", {}))


def _make(path: str, params: dict[str, Any]) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**params)


def search(job: dict[str, Any], mode: str) -> dict[str, Any]:
    """Run GridSearchCV as ``mode`` asks; timings and the best score."""
    import pandas as pd
    from sklearn.model_selection import GridSearchCV
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    frame = pd.read_csv(job["data"])
    X, y = frame.drop(columns=[job["target"]]), frame[job["target"]]
    loaded = time.perf_counter()

    reference = mode == "reference"
    searcher = GridSearchCV(
        build_estimator(job["estimator"]),
        job["paramGrid"],
        cv=job["cv"],
        scoring=job.get("scoring"),
        n_jobs=1 if reference else len(os.sched_getaffinity(0)),
        # The reference measures fits, not the refit; the contender refits,
        # as kubegrid does by default.
        refit=not reference,
    )
    if reference:
        with threadpool_limits(limits=1):
            searcher.fit(X, y)
    else:
        searcher.fit(X, y)
    fitted = time.perf_counter()

    results = searcher.cv_results_
    n_splits = searcher.n_splits_
    work = float(
        ((results["mean_fit_time"] + results["mean_score_time"]) * n_splits).sum()
    )
    best = int(results["rank_test_score"].argmin())
    return {
        "mode": mode,
        "n_candidates": len(results["params"]),
        "n_splits": n_splits,
        "load_seconds": loaded - started,
        "search_seconds": fitted - loaded,
        "fit_score_seconds": work,
        "best_score": float(results["mean_test_score"][best]),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("parallel", "reference"):
        print(
            "usage: python -m bench.baseline JOB.json parallel|reference",
            file=sys.stderr,
        )
        return 2
    with open(argv[0]) as handle:
        job = json.load(handle)
    print(json.dumps(search(job, argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
