"""Reducing: merge every shard's partial results into the search's artifacts.

Called by ``kubegrid reduce`` (the reducer Job) and at the end of ``kubegrid
run``. The merge hands the per-task results, in GridSearchCV's own order, to
scikit-learn's own result formatter, so ``cv_results`` has exactly the keys,
values, NaNs and ranks that ``GridSearchCV.cv_results_`` would have.

Artifacts, under the output location::

    cv_results.parquet, cv_results.csv   one row per candidate
    best_estimator.joblib                 refit on all the data (when refit asks)
    holdout.json, tuned_estimator.joblib  the refit model on the test rows
    report.html, report-*.png             the report (see kubegrid.report)
    summary.json                          written last: its presence means done

A reducer deletes summary.json before it writes any artifact, so one that dies
halfway leaves no summary vouching for a mix of old and new files. Re-running
it rewrites the same artifacts from the same partials.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection._validation import _warn_or_raise_about_fit_failures
from threadpoolctl import threadpool_limits

from kubegrid import holdout, metrics, parallel, partials, report, results
from kubegrid.context import SearchContext
from kubegrid.errors import FitError, MissingResults, SpecError
from kubegrid.execution import SCORE_FAILED

logger = logging.getLogger(__name__)


def collect(ctx: SearchContext) -> tuple[list[dict[str, Any]], list[partials.Record]]:
    """Every task's result in GridSearchCV's order (candidate-major).

    Raises MissingResults naming the shards whose results are missing or corrupt.
    """
    plan = ctx.plan
    records, problems = partials.read_records(ctx.output(), ctx.fingerprint)
    missing = partials.missing_by_shard(records, plan.shard_of_tasks(), plan.n_tasks)
    if missing:
        shards = ", ".join(f"{s} ({n} tasks)" for s, n in sorted(missing.items()))
        detail = f"; {'; '.join(problems)}" if problems else ""
        raise MissingResults(
            f"results are missing for shards {shards} of {plan.n_shards} "
            f"under {ctx.spec.output.uri}/partials/{ctx.fingerprint}; run those "
            f"shards again{detail}",
            sorted(missing),
        )
    ordered = [records[task] for task in range(plan.n_tasks)]
    out = [_as_fit_and_score_output(r) for r in ordered]
    return out, ordered


def cv_results(ctx: SearchContext, out: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``cv_results_`` dict GridSearchCV would build from these fits."""
    search = ctx.search_cv()
    try:
        # The summary lists failed fits by error; scikit-learn's warning would
        # repeat every traceback on the terminal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitFailedWarning)
            _warn_or_raise_about_fit_failures(out, ctx.spec.error_score_value)
    except ValueError as exc:
        raise FitError(_all_fits_failed(out, str(exc))) from None
    # Non-finite scores are counted in the summary, with the fits' own
    # warnings that explain them.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "One or more of the test scores")
        warnings.filterwarnings("ignore", "One or more of the train scores")
        return search._format_results(ctx.plan.candidates, ctx.plan.n_splits, out)


def best_index(ctx: SearchContext, table: dict[str, Any]) -> int | None:
    """GridSearchCV's ``best_index_``; None when refit is false with several metrics."""
    spec = ctx.spec
    if not spec.refit and spec.multimetric:
        return None
    metric = spec.refit_metric or "score"
    refit = spec.refit if spec.multimetric else True
    return int(ctx.search_cv()._select_best_index(refit, metric, table))


def reduce(ctx: SearchContext) -> dict[str, Any]:
    """Merge partials, refit the best candidate, write every artifact.

    Returns the summary that was written.
    """
    started = time.perf_counter()
    store = ctx.output()
    out, records = collect(ctx)

    # A summary left by an earlier reduce would vouch for the artifacts this
    # one is about to replace; withdraw it until they are all written again.
    # The artifacts go too: an earlier search's, left beside a failed one,
    # would read as this search's results.
    store.delete(results.SUMMARY)
    store.delete_many(results.replaced_artifacts())
    table = cv_results(ctx, out)
    _check_some_scores(records, table)
    table.update(_extra_columns(ctx, records))
    best = best_index(ctx, table)

    summary = _summary(ctx, table, best, records)

    # The search's figures need only the table: they are drawn meanwhile,
    # starting before anything is written. Artifacts go first, the summary
    # last: a reader who finds summary.json finds everything it points to.
    with report.drawing(table, summary) as search_figures:
        results.write_cv_results(store, table)
        model = None
        if best is not None and ctx.spec.refit:
            threads = _refit_threads(
                float(table["mean_fit_time"][best]), search_figures
            )
            with threadpool_limits(threads):
                model, refit_seconds = _refit(ctx, table["params"][best])
            summary["refitSeconds"] = round(refit_seconds, 3)
            summary["threads"]["refit"] = threads
        evaluation = None
        if model is not None and ctx.holdout is not None:
            evaluation = _evaluate_holdout(ctx, model, summary)
        _write_report(ctx, table, summary, evaluation, search_figures)
    summary["reduceSeconds"] = round(time.perf_counter() - started, 3)
    store.write(
        results.SUMMARY, json.dumps(summary, indent=2, default=_json_default).encode()
    )
    logger.info(
        "reduced %d tasks: best %s = %s",
        ctx.plan.n_tasks,
        summary.get("bestParams"),
        summary.get("bestScore"),
    )
    return summary


def reduce_recovering(
    ctx: SearchContext, rerun: Callable[[list[int]], None]
) -> dict[str, Any]:
    """Reduce; if partials were lost or corrupted, ``rerun`` their shards once.

    The shards to rerun are those of this plan holding a task without a
    readable record, whatever files exist: an earlier run of the same search
    may have cut its shards differently. A corrupt partial is deleted when
    read; finished tasks of a rerun shard are skipped, not refitted.
    """
    try:
        return reduce(ctx)
    except MissingResults as exc:
        logger.warning("%s", exc)
        rerun(exc.shards)
        return reduce(ctx)


# A refit expected to take less than this runs beside the figures' processes,
# on the CPUs they leave; a longer one waits the second or two they take, then
# has every CPU. (Oversubscribed OpenBLAS threads spin: a 0.2 s refit sharing
# two CPUs with two drawing processes took 3.5 s.)
SHORT_REFIT_SECONDS = 10.0


def _refit_threads(
    mean_fit_seconds: float, figures: Callable[[], list[report.Image]]
) -> int:
    """BLAS/OpenMP threads for the refit, given the best candidate's mean fit
    time in the search (one thread per worker there)."""
    cpus = parallel.cpus()
    drawing = report.drawing_processes()
    if not drawing:
        return cpus
    if mean_fit_seconds < SHORT_REFIT_SECONDS:
        return max(1, cpus - drawing)
    figures()
    return cpus


def _refit(ctx: SearchContext, params: dict[str, Any]) -> tuple[Any, float]:
    # Exactly GridSearchCV's refit: a fresh clone with the best params,
    # fitted on all the data.
    started = time.perf_counter()
    model = clone(ctx.estimator).set_params(**clone(params, safe=False))
    model.fit(ctx.data.X, ctx.data.y)
    seconds = time.perf_counter() - started
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    ctx.output().write(results.BEST_ESTIMATOR, buffer.getvalue())
    return model, seconds


def _evaluate_holdout(
    ctx: SearchContext, model: Any, summary: dict[str, Any]
) -> dict[str, Any]:
    """Score the refit model on the test rows; write holdout.json (and the
    threshold-tuned model); put the scores into the summary."""
    assert ctx.holdout is not None
    evaluation, tuned = holdout.evaluate(ctx.spec, model, ctx.data, ctx.holdout)
    store = ctx.output()
    store.write(
        results.HOLDOUT,
        json.dumps(evaluation, indent=2, default=_json_default).encode(),
    )
    base = ctx.spec.output.uri.rstrip("/")
    summary["artifacts"]["holdout"] = f"{base}/{results.HOLDOUT}"
    if tuned is not None:
        buffer = io.BytesIO()
        joblib.dump(tuned, buffer)
        store.write(results.TUNED_ESTIMATOR, buffer.getvalue())
        summary["artifacts"]["tunedEstimator"] = f"{base}/{results.TUNED_ESTIMATOR}"
    summary["holdout"] = holdout.brief(evaluation)
    return evaluation


def _write_report(
    ctx: SearchContext,
    table: dict[str, Any],
    summary: dict[str, Any],
    evaluation: dict[str, Any] | None,
    search_figures: Callable[[], list[report.Image]],
) -> None:
    # The report explains results; failing to draw it must not lose them.
    try:
        report.write(ctx.output(), table, summary, evaluation, search_figures())
    except Exception as exc:
        logger.exception("the report could not be drawn")
        summary["warnings"].append(f"report not written: {type(exc).__name__}: {exc}")
        return
    base = ctx.spec.output.uri.rstrip("/")
    summary["artifacts"]["reportUri"] = f"{base}/{results.REPORT}"


def _as_fit_and_score_output(record: partials.Record) -> dict[str, Any]:
    out = {
        "test_scores": record["test_scores"],
        "n_test_samples": record["n_test_samples"],
        "fit_time": record["fit_time"],
        "score_time": record["score_time"],
        "fit_error": record["fit_error"],
    }
    if record.get("train_scores") is not None:
        out["train_scores"] = record["train_scores"]
    return out


def _extra_columns(
    ctx: SearchContext, records: list[partials.Record]
) -> dict[str, Any]:
    """kubegrid's own per-candidate columns, beside scikit-learn's."""
    n_c, n_s = ctx.plan.n_candidates, ctx.plan.n_splits
    memory = np.array([r["peak_memory_mb"] for r in records], dtype=float).reshape(
        n_c, n_s
    )
    failed = np.array([bool(r["fit_error"]) for r in records]).reshape(n_c, n_s)
    # Partials written before threads were recorded count as 0: unknown.
    threads = np.array([r.get("threads", 0) for r in records], dtype=np.int32)
    return {
        "max_peak_memory_mb": memory.max(axis=1),
        "n_failed_fits": failed.sum(axis=1).astype(np.int32),
        "n_threads": threads.reshape(n_c, n_s).max(axis=1),
    }


def _summary(
    ctx: SearchContext,
    table: dict[str, Any],
    best: int | None,
    records: list[partials.Record],
) -> dict[str, Any]:
    spec = ctx.spec
    errors = [r["fit_error"] for r in records if r["fit_error"]]
    summary: dict[str, Any] = {
        "name": ctx.manifest.metadata.name,
        "fingerprint": ctx.fingerprint,
        "nCandidates": ctx.plan.n_candidates,
        "nSplits": ctx.plan.n_splits,
        "nTasks": ctx.plan.n_tasks,
        "nShards": ctx.plan.n_shards,
        "nFailedFits": len(errors),
        "fitErrors": _error_summary(errors),
        "nFailedScores": sum(_score_failed(r) for r in records),
        "fitWarnings": _warning_summary(records),
        "refitMetric": spec.refit_metric,
        "metrics": spec.metric_names,
        "greaterIsBetter": metrics.greater_is_better(spec.scoring),
        "scorers": metrics.describe(spec.scoring),
        "datasetChecksum": ctx.data.checksum,
        "nSamples": ctx.data.n_samples,
        "versions": ctx.versions,
        "warnings": ctx.warnings,
        "fitSeconds": round(sum(r["fit_time"] + r["score_time"] for r in records), 3),
        # BLAS/OpenMP threads each fit could use (the most over the search).
        "threads": {"fit": max((r.get("threads", 0) for r in records), default=0)},
        "artifacts": results.artifact_uris(
            spec.output.uri, best is not None and bool(spec.refit)
        ),
    }
    if best is not None:
        metric = spec.refit_metric or "score"
        summary["bestIndex"] = best
        summary["bestParams"] = table["params"][best]
        summary["bestScore"] = _finite_or_none(table[f"mean_test_{metric}"][best])
    return summary


def _error_summary(errors: list[str]) -> list[dict[str, Any]]:
    """The distinct fit errors, by their last line, most frequent first."""
    last_lines = Counter(e.strip().splitlines()[-1] for e in errors)
    return [{"error": line, "count": n} for line, n in last_lines.most_common(5)]


def _score_failed(record: partials.Record) -> bool:
    return any(w.startswith(SCORE_FAILED) for w in record.get("warnings") or [])


def _warning_summary(records: list[partials.Record]) -> list[dict[str, Any]]:
    """The distinct warnings of the search's tasks, most frequent first, each
    with the number of tasks that raised it."""
    counts = Counter(w for r in records for w in r.get("warnings") or [])
    return [{"warning": line, "tasks": n} for line, n in counts.most_common(5)]


def _check_some_scores(records: list[partials.Record], table: dict[str, Any]) -> None:
    """Refuse a search whose every score failed: it has no best candidate.

    scikit-learn would rank the NaNs and refit the first candidate; a metric
    that cannot score any split is a mistake in spec.scoring, named here with
    the scorer's own error.
    """
    if not records or not all(_score_failed(r) for r in records):
        return
    means = [
        np.asarray(v, dtype=float)
        for k, v in table.items()
        if k.startswith("mean_test_")
    ]
    if any(np.isfinite(m).any() for m in means):
        return
    first = _warning_summary(records)[0]["warning"][len(SCORE_FAILED) :]
    raise SpecError(
        "spec.scoring",
        f"scoring failed on all {len(records)} fits, so no candidate has a "
        f"score; the error: {first}",
    )


def _all_fits_failed(out: list[dict[str, Any]], message: str) -> str:
    errors = _error_summary([o["fit_error"] for o in out if o["fit_error"]])
    first = errors[0]["error"] if errors else message
    return f"all {len(out)} fits failed; the most common error: {first}"


def _finite_or_none(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)
