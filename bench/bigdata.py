"""W4: kubegrid alone on a table of several hundred MB, as CSV and as Parquet.

Called by :mod:`bench.cli`. The table is synthetic numeric data written once
into the cache (pyarrow writes both files: pandas' CSV writer takes minutes
at this size). For each format, ``repeats`` times:

* the load alone, in a child (``python -m bench.bigdata load MANIFEST``):
  ``kubegrid.data.load`` timed, with the RSS high-water mark before and after;
* a whole ``kubegrid run`` of a small Ridge grid on local files, whose peak
  tree PSS says whether the forked workers share the loaded frame (PSS near
  one frame) or copy it (PSS near one frame per worker).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench import measure, paths, stats

logger = logging.getLogger(__name__)

N_FEATURES = 24
# pyarrow writes a random float64 in about 19 characters: 25 columns make a
# row of ~480 bytes, so 640k rows is ~300 MB of CSV.
FULL_ROWS, QUICK_ROWS = 640_000, 20_000


def files(cache: Path, quick: bool) -> dict[str, Path]:
    """The CSV and Parquet copies of the table, generated on first use."""
    rows = QUICK_ROWS if quick else FULL_ROWS
    folder = cache / "data"
    found = {
        "csv": folder / f"big-{rows}.csv",
        "parquet": folder / f"big-{rows}.parquet",
    }
    if not all(p.exists() for p in found.values()):
        logger.info("W4: generating %d rows × %d features", rows, N_FEATURES)
        _generate(rows, found)
    return found


def _generate(rows: int, targets: dict[str, Path]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, N_FEATURES))
    y = X @ rng.standard_normal(N_FEATURES) + 0.1 * rng.standard_normal(rows)
    columns = {f"f{i}": X[:, i] for i in range(N_FEATURES)} | {"target": y}
    table = pa.table(columns)
    targets["csv"].parent.mkdir(parents=True, exist_ok=True)
    for fmt, path in targets.items():
        partial = path.with_name(path.name + ".tmp")
        if fmt == "csv":
            pyarrow.csv.write_csv(table, partial)
        else:
            pyarrow.parquet.write_table(table, partial)
        partial.rename(path)


def _manifest(data: Path, output: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": "bench-w4"},
        "spec": {
            "dataset": {"uri": str(data), "target": "target"},
            "estimator": {"class": "sklearn.linear_model.Ridge"},
            "paramGrid": {"alpha": [0.1, 1.0, 10.0]},
            "cv": 3,
            "output": {"uri": str(output)},
        },
    }


def run(cache: Path, folder: Path, repeats: int, quick: bool) -> list[dict[str, Any]]:
    """Measure load and run for each format, alternating CSV and Parquet."""
    data = files(cache, quick)
    manifests = {}
    for fmt, path in data.items():
        manifests[fmt] = folder / f"W4-{fmt}.yaml"
        manifests[fmt].write_text(yaml.safe_dump(_manifest(path, folder / "W4-out")))
    loads: dict[str, list[dict[str, Any]]] = {fmt: [] for fmt in data}
    runs: dict[str, list[measure.Measurement]] = {fmt: [] for fmt in data}
    for i in range(repeats):
        for fmt in data:
            logger.info("W4 %s: repeat %d/%d", fmt, i + 1, repeats)
            loads[fmt].append(_load(manifests[fmt]))
            runs[fmt].append(_run(manifests[fmt], folder / f"W4-{fmt}-{i}"))
    return [_row(fmt, data[fmt], loads[fmt], runs[fmt]) for fmt in data]


def _load(manifest: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.bigdata", "load", str(manifest)]
    out = measure.run(command, env=paths.child_env(), cwd=paths.REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run(manifest: Path, output: Path) -> measure.Measurement:
    command = [
        *paths.kubegrid_command(),
        "run",
        str(manifest),
        "--quiet",
        "--output",
        str(output),
    ]
    return measure.run(
        command, env=paths.child_env(), cwd=paths.REPO, log=output.with_suffix(".log")
    )


def _row(
    fmt: str, path: Path, loads: list[dict[str, Any]], runs: list[measure.Measurement]
) -> dict[str, Any]:
    return {
        "format": fmt,
        "file_mb": path.stat().st_size / 2**20,
        "frame_mb": loads[-1]["frame_mb"],
        "load": stats.spread([x["load_seconds"] for x in loads]),
        "load_peak_mb": max(x["maxrss_delta_mb"] for x in loads),
        "run": stats.spread([r.wall_seconds for r in runs]),
        "run_peak_pss_mb": max(r.peak_pss_mb for r in runs),
        "run_peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "run_cpu_seconds": stats.spread([r.cpu_seconds for r in runs]),
        "run_peak_processes": max(r.peak_processes for r in runs),
    }


def _load_child(manifest: str) -> dict[str, Any]:
    from bench.probes import peak_rss_mb
    from kubegrid import data, spec

    search = spec.load(manifest)
    before = peak_rss_mb()
    started = time.perf_counter()
    loaded = data.load(search.spec)
    seconds = time.perf_counter() - started
    after = peak_rss_mb()
    frame = loaded.X.memory_usage(deep=True).sum() + loaded.y.memory_usage(deep=True)
    return {
        "load_seconds": seconds,
        "frame_mb": frame / 2**20,
        "maxrss_before_mb": before,
        "maxrss_delta_mb": after - before,
    }


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "load":
        print("usage: python -m bench.bigdata load MANIFEST", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_load_child(sys.argv[2])))
