"""The ``kubegrid`` command line: local runs, the pods' entry points, and tools.

Subcommands::

    kubegrid run FILE              plan, run every shard locally, reduce
    kubegrid run-shard FILE        one shard (a Job pod: index from the environment)
    kubegrid reduce FILE           merge partial results into the artifacts
    kubegrid validate FILE         check a manifest (add --data to load the data too)
    kubegrid report SOURCE         draw report.html again from a search's results
    kubegrid sample-data NAME DEST write a dataset scikit-learn ships (digits, iris…)
    kubegrid submit FILE           create or apply the GridSearch in the kube context
    kubegrid status NAME [--wait]  phase, progress, ETA, best so far
    kubegrid results NAME [--top N] summary and top candidates from the output URI
    kubegrid --version             the installed version

Exit codes follow :mod:`kubegrid.errors`: 2 for a user's mistake (no
traceback, the message names the field), 75 for a transient failure worth a
retry, 1 for a bug.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kubegrid import errors, samples, storage
from kubegrid import spec as specs

logger = logging.getLogger(__name__)


# Kubernetes keeps at most this many bytes of a termination message.
_REPORT_LIMIT = 4096


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.command)
    report_to = getattr(args, "report_to", None)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except errors.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _report(report_to, {"error": str(exc), "kind": "user"})
        return exc.exit_code
    except errors.InfraError as exc:
        print(f"error (transient, worth a retry): {exc}", file=sys.stderr)
        _report(report_to, {"error": str(exc), "kind": "infra"})
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished tasks are kept for the next run", file=sys.stderr)
        return 130


def _report(path: str | None, report: dict[str, Any]) -> None:
    """Leave a short JSON report where the operator reads it.

    In a pod this is the container's terminationMessagePath: Kubernetes copies
    it into the pod status, so the operator learns a shard's outcome without
    any access to object storage.
    """
    if not path:
        return
    text = json.dumps(report, default=str)
    if len(text) > _REPORT_LIMIT:
        text = json.dumps({k: v for k, v in report.items() if k != "bestParams"})
        text = text[: _REPORT_LIMIT - 1]
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except OSError as exc:
        logger.warning("cannot write the report to %s: %s", path, exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubegrid",
        description="scikit-learn model selection, sharded over Kubernetes Jobs "
        "or run locally.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_VERBOSE)
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="print the version and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a whole search on this machine")
    run.add_argument("file", help="GridSearch manifest (YAML)")
    run.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="worker processes (default: cores)",
    )
    run.add_argument("--output", help="override spec.output.uri")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_cmd_run)

    shard = commands.add_parser("run-shard", help="run one shard (a Job pod)")
    shard.add_argument("file")
    shard.add_argument(
        "--index",
        type=int,
        default=None,
        help="shard index (default: $JOB_COMPLETION_INDEX)",
    )
    shard.add_argument(
        "--shards", type=_positive, default=None, help="total shard count"
    )
    shard.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="worker processes (default: from the container's CPU limit)",
    )
    _add_report_option(shard)
    shard.set_defaults(handler=_cmd_run_shard)

    reduce = commands.add_parser("reduce", help="merge partial results")
    reduce.add_argument("file")
    reduce.add_argument("--shards", type=_positive, default=None)
    _add_report_option(reduce)
    reduce.set_defaults(handler=_cmd_reduce)

    validate = commands.add_parser("validate", help="check a manifest")
    validate.add_argument("file")
    validate.add_argument("--data", action="store_true", help="also load the data")
    validate.set_defaults(handler=_cmd_validate)

    report = commands.add_parser(
        "report", help="draw the results report again from the artifacts"
    )
    report.add_argument(
        "source", help="GridSearch manifest, or its output location (dir or s3://)"
    )
    report.add_argument("--endpoint-url", default=None, help="S3 endpoint")
    report.set_defaults(handler=_cmd_report)

    sample = commands.add_parser(
        "sample-data", help="write a dataset that scikit-learn ships"
    )
    sample.add_argument("name", choices=sorted(samples.LOADERS))
    sample.add_argument("dest", help="local path or s3:// URI (.csv or .parquet)")
    sample.add_argument("--endpoint-url", default=None, help="S3 endpoint")
    sample.set_defaults(handler=_cmd_sample_data)

    # The cluster commands import the Kubernetes client only when they run.
    from kubegrid import cluster

    cluster.add_commands(commands)

    # -v may also follow the command (kubegrid run -v FILE), as users type it.
    for command in commands.choices.values():
        command.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=_VERBOSE
        )
    return parser


_VERBOSE = "log progress (-v) or everything, libraries included (-vv)"


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, as pip reports it.

    Asked of the installed metadata rather than written here, so it can never
    drift from pyproject.toml; and only when asked, since reading it costs
    every other command's start-up a few hundredths of a second.
    """

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import importlib.metadata

        try:
            version = importlib.metadata.version("kubegrid")
        except importlib.metadata.PackageNotFoundError:
            version = "(not installed)"
        print(f"{parser.prog} {version}")
        parser.exit()


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _add_report_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report-to",
        default=os.environ.get("KUBEGRID_REPORT_PATH"),
        help="write a short JSON outcome here (a pod's terminationMessagePath)",
    )


def _configure_logging(verbose: int, command: str) -> None:
    # Pods log every milestone; an interactive run keeps the terminal for the
    # progress bar unless asked to say more.
    quiet_default = logging.WARNING if command == "run" else logging.INFO
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else quiet_default
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _load(path: str, output: str | None = None) -> specs.GridSearch:
    manifest = specs.load(path)
    if output:
        spec = manifest.spec.model_copy(update={"output": specs.Output(uri=output)})
        manifest = manifest.model_copy(update={"spec": spec})
    return manifest


def _prefetched(manifest: specs.GridSearch) -> contextlib.AbstractContextManager[None]:
    """Download the dataset in the background while the caller imports."""
    spec = manifest.spec
    return storage.prefetching(spec.dataset.uri, storage.location_of(spec))


def _cmd_run(args: argparse.Namespace) -> int:
    manifest = _load(args.file, args.output)
    with _prefetched(manifest):
        from kubegrid import console, context, local

        ctx = context.prepare(manifest)
    ctx.check_output()
    for note in ctx.warnings:
        console.warn(note)
    console.plan(ctx)
    with console.progress(ctx.plan.n_tasks, enabled=not args.quiet) as advance:
        summary = local.run(ctx, args.workers, advance)
    console.outcome(ctx, summary)
    return errors.EXIT_OK


def _shard_index(given: int | None) -> int:
    if given is not None:
        return given
    value = os.environ.get("JOB_COMPLETION_INDEX")
    if value is None or not value.isdigit():
        raise errors.SpecError(
            "--index",
            "give --index N, or run as an Indexed Job pod "
            "(which sets JOB_COMPLETION_INDEX)",
        )
    return int(value)


def _cmd_run_shard(args: argparse.Namespace) -> int:
    index = _shard_index(args.index)
    manifest = _load(args.file)
    with _prefetched(manifest):
        from kubegrid import context, execution, parallel

        ctx = context.prepare(manifest, n_shards=args.shards)
    ctx.check_output()
    n_tasks = len(ctx.plan.task_ids(index))
    budget = parallel.budget(n_tasks, ctx.estimator_jobs())
    workers = args.workers or budget.workers
    logger.info("shard %d: %s", index, budget.as_dict())
    report = execution.run_shard(ctx, index, workers=workers)
    report["budget"] = budget.as_dict()
    _report(args.report_to, report)
    print(json.dumps(report))
    return errors.EXIT_OK


def _cmd_reduce(args: argparse.Namespace) -> int:
    manifest = _load(args.file)
    with _prefetched(manifest):
        from kubegrid import context, execution, reducer

        ctx = context.prepare(manifest, n_shards=args.shards)

    # No shard pod runs again once the reducer starts, so shards whose
    # partials were lost or altered are recomputed here, in this pod.
    def rerun(missing: list[int]) -> None:
        for shard in missing:
            execution.run_shard(ctx, shard)

    summary = reducer.reduce_recovering(ctx, rerun)
    _report(args.report_to, _brief(summary))
    print(json.dumps(_brief(summary)))
    return errors.EXIT_OK


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "bestParams",
        "bestScore",
        "refitMetric",
        "nCandidates",
        "nTasks",
        "nFailedFits",
        "fitSeconds",
    )
    return {k: summary[k] for k in keys if k in summary} | {
        "resultsUri": summary["artifacts"]["cvResults"],
        "summaryUri": summary["artifacts"]["summary"],
        "reportUri": summary["artifacts"].get("reportUri"),
    }


def _cmd_validate(args: argparse.Namespace) -> int:
    from kubegrid import context

    manifest = _load(args.file)
    if args.data:
        ctx = context.prepare(manifest)
        print(
            f"ok: {ctx.plan.n_candidates} candidates × {ctx.plan.n_splits} splits = "
            f"{ctx.plan.n_tasks} fits in {ctx.plan.n_shards} shards"
        )
    else:
        _, candidates = context.check_without_data(manifest)
        # Say what was not looked at: a misspelt column passes this check.
        print(
            f"ok: {len(candidates)} candidates (the manifest only; add --data to "
            "check the dataset's columns and values too)"
        )
    return errors.EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from kubegrid import report, results

    # A manifest says where its output is and how to reach it; otherwise the
    # source is that output location itself.
    if args.source.endswith((".yaml", ".yml")) and os.path.isfile(args.source):
        spec = _load(args.source).spec
        output, location = spec.output.uri, storage.location_of(spec)
    else:
        output, location = args.source, storage.Location(args.endpoint_url)
    store = storage.open_store(output, location)
    if not store.exists(results.SUMMARY):
        raise errors.SpecError(
            "source", f"no summary.json under {output}: has the search finished?"
        )
    names = report.rebuild(store)
    print(f"report: {output.rstrip('/')}/{names[0]} ({len(names) - 1} figures)")
    return errors.EXIT_OK


def _cmd_sample_data(args: argparse.Namespace) -> int:
    import sklearn.datasets

    from kubegrid import results

    loader = getattr(sklearn.datasets, samples.LOADERS[args.name])
    frame = loader(as_frame=True).frame
    if args.dest.endswith((".parquet", ".pq")):
        data = results.parquet_bytes(frame)
    else:
        data = frame.to_csv(index=False).encode()
    parent, _, name = args.dest.rpartition("/")
    store = storage.open_store(parent or ".", storage.Location(args.endpoint_url))
    store.write(name, data)
    print(f"wrote {len(frame)} rows × {frame.shape[1]} columns to {args.dest}")
    return errors.EXIT_OK


def entry() -> None:
    """The ``kubegrid`` executable: :func:`main`, then leave at once.

    Once the command is done, its output flushed and the exit handlers run,
    nothing the interpreter would tear down (thousands of modules, BLAS and
    matplotlib state) can matter to anyone: tearing it down took up to 0.7 s
    of every run's wall time. Callers of :func:`main` (tests, embedding code)
    keep the normal interpreter exit.
    """
    code = main()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe has nothing to lose
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
