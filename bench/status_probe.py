"""Size of a GridSearch's status for a grid of 10^5 candidates.

Called by :mod:`bench.probes`. Drives ``kubegrid.operator.status``'s pure
functions through a search's life with synthetic Job and Pod objects, the
worst case at each step (every other shard done, many failed pods with long
messages, a long ``bestParams``), and reports the largest status as JSON bytes.
Nothing talks to a cluster.
"""

from __future__ import annotations

import json
from typing import Any

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
JOB_LABEL = "batch.kubernetes.io/job-name"
NOW = "2026-01-01T00:10:00Z"
START = "2026-01-01T00:00:00Z"


def _pod(job: str, index: int, code: int, message: str) -> dict[str, Any]:
    terminated = {
        "exitCode": code,
        "reason": "Error" if code else "Completed",
        "message": message,
        "finishedAt": NOW,
    }
    return {
        "metadata": {"labels": {JOB_LABEL: job, INDEX_KEY: str(index)}},
        "status": {"containerStatuses": [{"state": {"terminated": terminated}}]},
    }


def _job(name: str, completions: int, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"completions": completions},
        "status": status,
    }


def sizes(n_candidates: int = 100_000, shards: int = 1000) -> dict[str, int]:
    """JSON bytes of the status at each stage of a synthetic search."""
    from kubegrid import spec as specs
    from kubegrid.operator import sizing, status

    spec = specs.GridSearchSpec.model_validate(
        {
            "dataset": {"uri": "s3://b/data.csv", "target": "y"},
            "estimator": {"class": "sklearn.linear_model.Ridge"},
            "paramGrid": {
                "alpha": [float(i + 1) for i in range(1000)],
                "tol": [1e-4 * (i + 1) for i in range(n_candidates // 1000)],
            },
            "search": {"maxCandidates": n_candidates},
            "sharding": {"shards": shards},
            "output": {"uri": "s3://b/out"},
        }
    )
    plan = sizing.size(spec)
    seen = status.Seen(generation=1, now=NOW, memory_limit="4Gi")
    out: dict[str, int] = {}
    current = status.accepted(plan, "gs-shards", 1, START)
    out["accepted"] = _bytes(current)

    # Half the shards done, scattered, so the index lists are as long as
    # Kubernetes' interval notation gets.
    odd = ",".join(str(i) for i in range(1, plan.n_shards, 2))
    running = _job(
        "gs-shards",
        plan.n_shards,
        {"completedIndexes": odd, "active": 50, "startTime": START},
    )
    current = status.observe_shards(current, running, [], seen)
    out["running"] = _bytes(current)

    # A failure on every even shard, each pod with a long message.
    even = ",".join(str(i) for i in range(0, plan.n_shards, 2))
    pods = [
        _pod("gs-shards", i, 2, json.dumps({"error": "x" * 3000, "kind": "user"}))
        for i in range(0, plan.n_shards, 2)
    ]
    failed = _job(
        "gs-shards",
        plan.n_shards,
        {
            "completedIndexes": odd,
            "failedIndexes": even,
            "startTime": START,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "FailedIndexes",
                    "message": "y" * 3000,
                }
            ],
        },
    )
    out["failed"] = _bytes(status.observe_shards(current, failed, pods, seen))

    # Success, with a best candidate whose params are as long as allowed.
    done = _job(
        "gs-shards",
        plan.n_shards,
        {
            "completedIndexes": f"0-{plan.n_shards - 1}",
            "startTime": START,
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    )
    current = status.observe_shards(current, done, [], seen)
    report = {
        "bestParams": {f"p{i}": "v" * 40 for i in range(40)},
        "bestScore": 0.987654321,
        "refitMetric": "score",
        "nFailedFits": 0,
        "resultsUri": "s3://b/out/cv_results.parquet",
        "summaryUri": "s3://b/out/summary.json",
    }
    reducer = _job(
        "gs-reduce", 1, {"conditions": [{"type": "Complete", "status": "True"}]}
    )
    final = status.observe_reducer(
        current, reducer, [_pod("gs-reduce", 0, 0, json.dumps(report))], seen
    )
    out["succeeded"] = _bytes(final)
    out["n_candidates"] = plan.n_candidates
    out["n_shards"] = plan.n_shards
    return out


def _bytes(current: Any) -> int:
    return len(json.dumps(current, separators=(",", ":")).encode())
