"""W1–W3: kubegrid against GridSearchCV, side by side, contenders alternating.

Called by :mod:`bench.cli`. For each workload:

1. write its CSV once into the cache and put a copy in the loopback S3;
2. run the single-core reference once (GridSearchCV, ``n_jobs=1``, one BLAS
   thread) for the efficiency's numerator;
3. ``repeats`` times, run GridSearchCV(n_jobs=cores) on the local CSV, then
   ``kubegrid run`` reading the CSV from S3 and writing its results there,
   each into a fresh output prefix so no finished work is reused.

Wall time is the child process's whole life, start-up and data load included,
because that is what a user waits for.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from bench import measure, paths, stats
from bench.loopback_s3 import CREDENTIALS, LoopbackS3
from bench.workloads import Workload

logger = logging.getLogger(__name__)

BASELINE = "GridSearchCV"
KUBEGRID = "kubegrid"


def run_workload(
    workload: Workload, s3: LoopbackS3, cache: Path, folder: Path, repeats: int
) -> dict[str, Any]:
    """Measure one workload; the result row :mod:`bench.report` prints."""
    csv = _dataset(workload, cache)
    uri = s3.upload(csv, f"data/{workload.name}-{csv.name}")
    job = folder / f"{workload.name}.job.json"
    job.write_text(
        json.dumps(
            {"data": str(csv), "target": workload.target} | workload.search_block()
        )
    )
    manifest = folder / f"{workload.name}.yaml"
    manifest.write_text(yaml.safe_dump(_manifest(workload, uri, s3.endpoint)))

    logger.info("%s: single-core reference", workload.name)
    reference = _baseline(job, "reference", folder / f"{workload.name}-ref.log")
    runs: dict[str, list[dict[str, Any]]] = {BASELINE: [], KUBEGRID: []}
    for i in range(repeats):
        logger.info("%s: repeat %d/%d", workload.name, i + 1, repeats)
        runs[BASELINE].append(
            _baseline(job, "parallel", folder / f"{workload.name}-base-{i}.log")
        )
        runs[KUBEGRID].append(
            _kubegrid(
                manifest,
                s3,
                f"{workload.name}/{folder.name}-{i}",
                folder / f"{workload.name}-kg-{i}.log",
            )
        )
    return _row(workload, reference, runs)


def _dataset(workload: Workload, cache: Path) -> Path:
    path = cache / "data" / f"{workload.data_key}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        workload.make_frame().to_csv(partial, index=False)
        partial.rename(path)
    return path


def _manifest(workload: Workload, uri: str, endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": f"bench-{workload.name.lower()}"},
        "spec": {
            "dataset": {"uri": uri, "target": workload.target},
            **workload.search_block(),
            "storage": {"endpointUrl": endpoint},
            # Overridden per run with --output.
            "output": {"uri": f"s3://unused/{workload.name}"},
        },
    }


def _baseline(job: Path, mode: str, log: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.baseline", str(job), mode]
    run = measure.run(command, env=paths.child_env(), cwd=paths.REPO, log=log)
    return _as_dict(run) | json.loads(run.stdout.strip().splitlines()[-1])


def _kubegrid(manifest: Path, s3: LoopbackS3, prefix: str, log: Path) -> dict[str, Any]:
    output = f"s3://{s3.bucket}/{prefix}"
    command = [
        *paths.kubegrid_command(),
        "run",
        str(manifest),
        "--quiet",
        "--output",
        output,
    ]
    run = measure.run(
        command, env=paths.child_env(CREDENTIALS), cwd=paths.REPO, log=log
    )
    summary = s3.read_json(f"{prefix}/summary.json")
    return _as_dict(run) | {
        "best_score": summary.get("bestScore"),
        "fit_score_seconds": summary.get("fitSeconds"),
        "reduce_seconds": summary.get("reduceSeconds"),
        "refit_seconds": summary.get("refitSeconds"),
        "n_shards": summary.get("nShards"),
    }


def _as_dict(run: measure.Measurement) -> dict[str, Any]:
    return {
        "wall_seconds": run.wall_seconds,
        "cpu_seconds": run.cpu_seconds,
        "parent_cpu_seconds": run.parent_cpu_seconds,
        "peak_rss_mb": run.peak_rss_mb,
        "peak_pss_mb": run.peak_pss_mb,
        "peak_processes": run.peak_processes,
        "foreign_cpu_seconds": run.foreign_cpu_seconds,
    }


def _row(
    workload: Workload,
    reference: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    cores = paths.cores()
    work = reference["fit_score_seconds"]
    contenders = {}
    for name, results in runs.items():
        wall = stats.spread([r["wall_seconds"] for r in results])
        contenders[name] = {
            "wall": wall,
            "efficiency": stats.efficiency(work, cores, wall["median"]),
            "cpu_seconds": stats.spread([r["cpu_seconds"] for r in results]),
            "peak_pss_mb": max(r["peak_pss_mb"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "best_score": results[-1]["best_score"],
            # Other processes' load, in cores, averaged over this contender's
            # runs: near 0 on a quiet machine.
            "foreign_load": sum(r["foreign_cpu_seconds"] for r in results)
            / sum(r["wall_seconds"] for r in results),
            "runs": results,
        }
    return {
        "workload": workload.name,
        "title": workload.title,
        "n_candidates": workload.n_candidates,
        "n_splits": reference["n_splits"],
        "n_tasks": workload.n_candidates * reference["n_splits"],
        "cores": cores,
        "reference": reference,
        "single_core_seconds": work,
        "contenders": contenders,
        "ratio": contenders[KUBEGRID]["wall"]["median"]
        / contenders[BASELINE]["wall"]["median"],
    }
