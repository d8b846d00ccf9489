"""``python -m bench``: every workload, side by side, then the fixed costs.

Called by ``python -m bench`` and ``make bench``. Prints one table per
workload as it finishes and writes every number (each run, not only the
medians) to a JSON file, by default ``bench/.cache/last-run.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import paths, report

ALL = ("W1", "W2", "W3", "W4", "planning", "status", "api")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    # moto's HTTP server logs every request at INFO.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    only = _selection(args.only)
    cache = Path(args.cache).resolve()
    folder = paths.run_dir(cache)
    results: dict[str, Any] = {
        "quick": args.quick,
        "repeats": args.repeats,
        "machine": machine(),
    }
    print(_describe(results["machine"]), flush=True)

    comparisons = [w for w in ("W1", "W2", "W3") if w in only]
    if comparisons:
        results["comparisons"] = _compare(comparisons, args, cache, folder)
    if "W4" in only:
        from bench import bigdata

        results["big_data"] = bigdata.run(cache, folder, args.repeats, args.quick)
        print(report.big_data(results["big_data"]) + "\n", flush=True)
    results["probes"] = _probes(only, args.quick)

    out = Path(args.json) if args.json else cache / "last-run.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"all numbers: {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="kubegrid against GridSearchCV on this machine.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, for a smoke test; the numbers mean nothing",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each contender per workload (default 3)",
    )
    parser.add_argument(
        "--only",
        default=",".join(ALL),
        help=f"comma-separated subset of {','.join(ALL)}",
    )
    parser.add_argument(
        "--cache",
        default=str(paths.DEFAULT_CACHE),
        help="where generated data and run files go",
    )
    parser.add_argument("--json", default=None, help="write all numbers here")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log each run as it starts"
    )
    return parser


def _selection(text: str) -> set[str]:
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = wanted - set(ALL)
    if unknown:
        raise SystemExit(
            f"--only: unknown {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(ALL)}"
        )
    return wanted


def _compare(
    names: list[str], args: argparse.Namespace, cache: Path, folder: Path
) -> list[dict[str, Any]]:
    from bench import compare, loopback_s3, workloads

    _compile_kubegrid()
    rows = []
    with loopback_s3.serve() as s3:
        for workload in workloads.comparisons(args.quick):
            if workload.name in names:
                row = compare.run_workload(workload, s3, cache, folder, args.repeats)
                print(report.comparison(row) + "\n", flush=True)
                rows.append(row)
    return rows


def _compile_kubegrid() -> None:
    """Compile kubegrid's modules to bytecode, as installing a wheel does.

    An editable checkout run with PYTHONDONTWRITEBYTECODE=1 (as on the
    machines these numbers come from) would compile them again at every start,
    about 0.07 s a run that no installed copy pays.
    """
    import compileall

    import kubegrid

    for folder in kubegrid.__path__:
        compileall.compile_dir(folder, quiet=1)


def _probes(only: set[str], quick: bool) -> list[dict[str, Any]]:
    from bench import probes

    rows = []
    if "planning" in only:
        # 10^6 tasks as 200k candidates × 5 splits; 10^4 tasks when quick.
        n = 2_000 if quick else 200_000
        rows += [probes.planning(n, 5, kind) for kind in ("plain", "pipeline")]
    if "status" in only:
        rows.append(probes.status_size())
    if "api" in only:
        rows.append(probes.api_calls(quick))
    for row in rows:
        print(report.probe(row), flush=True)
    return rows


def machine() -> dict[str, Any]:
    """What the numbers were measured on, BLAS included."""
    import os
    import platform

    import numpy
    import sklearn
    import threadpoolctl

    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    return {
        "cpu": model,
        "cores": paths.cores(),
        "memory_gib": round(total_kb / 2**20, 1),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "blas": [
            {
                k: lib.get(k)
                for k in ("internal_api", "version", "architecture", "num_threads")
            }
            for lib in threadpoolctl.threadpool_info()
        ],
    }


def _describe(m: dict[str, Any]) -> str:
    blas = "; ".join(
        f"{b['internal_api']} {b['version'] or ''} {b['architecture'] or ''}".strip()
        for b in m["blas"]
    )
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Python "
        f"{m['python']}, numpy {m['numpy']}, scikit-learn {m['scikit-learn']}\n"
        f"BLAS: {blas}; OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE'] or 'unset'}\n"
    )


if __name__ == "__main__":
    sys.exit(main())
