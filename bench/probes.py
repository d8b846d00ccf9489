"""Planning time and memory, status size, API calls: kubegrid's fixed costs.

Called by :mod:`bench.cli`. The planning probe runs in a child process
(``python -m bench.probes planning N_CANDIDATES N_SPLITS KIND``) so that its
peak memory is its own: it reports the RSS high-water mark after the imports
and after ``make_plan``, and the difference is what planning cost.

The status probe drives ``kubegrid.operator.status`` (:mod:`bench.status_probe`),
the API-call probe the operator under the test harness (:mod:`bench.api_probe`);
when the modules they need are missing they say "not measured yet" rather
than guess.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import measure, paths

NOT_MEASURED = "not measured yet"


def planning(n_candidates: int, n_splits: int, kind: str) -> dict[str, Any]:
    """Time and peak-memory growth of ``make_plan`` for a synthetic grid."""
    command = [
        sys.executable,
        "-m",
        "bench.probes",
        "planning",
        str(n_candidates),
        str(n_splits),
        kind,
    ]
    run = measure.run(command, env=paths.child_env(), cwd=paths.REPO)
    inner = json.loads(run.stdout.strip().splitlines()[-1])
    n_tasks = inner["n_tasks"]
    return {
        "name": f"planning {n_tasks:,} tasks ({kind})",
        "value": inner["plan_seconds"],
        **inner,
        "text": (
            f"{inner['plan_seconds']:.2f} s (listing candidates "
            f"{inner['candidates_seconds']:.2f} s, ordering and cutting "
            f"{inner['plan_seconds'] - inner['candidates_seconds']:.2f} s), "
            f"peak memory +{inner['maxrss_delta_mb']:.0f} MiB over "
            f"{inner['maxrss_before_mb']:.0f} MiB of imports"
        ),
    }


def _grid(n_candidates: int, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    # Two parameters whose product is n_candidates; a pipeline variant also
    # varies a prefix step, so that every candidate has a non-empty prefix key.
    alphas = [float(i + 1) for i in range(1000)]
    rest = max(1, n_candidates // 1000)
    if kind == "pipeline":
        estimator = {
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "clf", "class": "sklearn.linear_model.Ridge"},
            ]
        }
        grid = {
            "scale__with_std": [True, False],
            "clf__alpha": alphas,
            "clf__tol": [1e-4 * (i + 1) for i in range(max(1, rest // 2))],
        }
        return estimator, grid
    return {"class": "sklearn.linear_model.Ridge"}, {
        "alpha": alphas,
        "tol": [1e-4 * (i + 1) for i in range(rest)],
    }


def _planning_child(n_candidates: int, n_splits: int, kind: str) -> dict[str, Any]:
    from kubegrid import planning
    from kubegrid import spec as specs

    estimator, grid = _grid(n_candidates, kind)
    spec = specs.GridSearchSpec.model_validate(
        {
            "dataset": {"uri": "unused.csv", "target": "y"},
            "estimator": estimator,
            "paramGrid": grid,
            "search": {"maxCandidates": 10 * n_candidates},
            "cv": n_splits,
            "output": {"uri": "unused"},
        }
    )
    before = peak_rss_mb()
    started = time.perf_counter()
    params = planning.candidates(spec)
    listed = time.perf_counter()
    plan = planning.make_plan(spec, n_splits, candidate_params=params)
    done = time.perf_counter()
    after = peak_rss_mb()
    return {
        "n_candidates": plan.n_candidates,
        "n_tasks": plan.n_tasks,
        "n_shards": plan.n_shards,
        "candidates_seconds": listed - started,
        "plan_seconds": done - started,
        "maxrss_before_mb": before,
        "maxrss_after_mb": after,
        "maxrss_delta_mb": after - before,
    }


def status_size() -> dict[str, Any]:
    """JSON bytes of a GridSearch status for 10^5 candidates, worst stage."""
    name = "status size, 10^5 candidates"
    if importlib.util.find_spec("kubegrid.operator.status") is None:
        return {
            "name": name,
            "value": None,
            "why": f"{NOT_MEASURED} (kubegrid.operator.status does not exist)",
        }
    from bench import status_probe

    by_stage = {shards: status_probe.sizes(shards=shards) for shards in (16, 1000)}
    largest = max(
        v
        for sizes in by_stage.values()
        for k, v in sizes.items()
        if not k.startswith("n_")
    )
    detail = "; ".join(
        f"{shards} shards: "
        + ", ".join(f"{k} {v:,}" for k, v in sizes.items() if not k.startswith("n_"))
        for shards, sizes in by_stage.items()
    )
    return {
        "name": name,
        "value": largest,
        "by_stage": by_stage,
        "text": f"largest {largest:,} bytes ({detail})",
    }


def api_calls(quick: bool) -> dict[str, Any]:
    """Kubernetes API requests per search, counted by the test harness."""
    name = "Kubernetes API calls per search"
    harness = paths.REPO / "tests" / "support" / "kube.py"
    handlers = importlib.util.find_spec("kubegrid.operator.handlers")
    if not harness.exists() or handlers is None:
        return {
            "name": name,
            "value": None,
            "why": f"{NOT_MEASURED} (needs "
            "tests/support/kube.py and kubegrid.operator.handlers)",
        }
    if quick:
        return {
            "name": name,
            "value": None,
            "why": "skipped with --quick (it runs three small searches)",
        }
    command = [sys.executable, "-m", "bench.api_probe"]
    run = measure.run(
        command,
        env=paths.child_env(),
        cwd=paths.REPO,
        log=Path(tempfile.gettempdir()) / "bench-api-probe.log",
    )
    cases = json.loads(run.stdout.strip().splitlines()[-1])
    text = "; ".join(
        f"{c['tasks']} tasks in {c['shards']} shards: {c['calls']} calls ({c['phase']})"
        for c in cases.values()
    )
    return {
        "name": name,
        "value": max(c["calls"] for c in cases.values()),
        "cases": cases,
        "text": text,
    }


def peak_rss_mb() -> float:
    """This process's own RSS high-water mark (VmHWM), in MiB.

    Not ``ru_maxrss``: Linux carries that across ``execve`` from the parent,
    so a child started by a large benchmark process would report the
    parent's peak.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "planning":
        print(
            "usage: python -m bench.probes planning N_CANDIDATES N_SPLITS KIND",
            file=sys.stderr,
        )
        sys.exit(2)
    result = _planning_child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    print(json.dumps(result))
