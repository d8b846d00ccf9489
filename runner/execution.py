"""Running one shard: fit and score its tasks, checkpointing as it goes.

Called by ``kubegrid run-shard`` in a pod and by the local pool of
``kubegrid run``. Each task is scored by scikit-learn's own ``_fit_and_score``,
the function GridSearchCV calls, so every number, NaN and failure message
matches what GridSearchCV would produce on the same split.

Three speed-ups keep those numbers unchanged:

* tasks fit on the table as an array rather than a DataFrame where no
  estimator could tell the two apart (:mod:`kubegrid.arrays`);
* tasks sharing a split and a pipeline prefix fit the prefix once and score
  only the final step per candidate (the same calls Pipeline makes, once);
  where those tasks are divided between processes of one machine, the first
  stores the prefix's output (:mod:`kubegrid.prefixes`) and the others read it;
* in a pod with several CPUs, the shard's tasks are spread over forked worker
  processes that share the loaded data.

Finished tasks are checkpointed every ``CHECKPOINT_SECONDS``; the environment
variable ``KUBEGRID_CHECKPOINT_SECONDS`` overrides that interval (a number of
seconds, 0 to checkpoint after every task), for stores where writes are cheap
and for tests that kill a shard on purpose.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import multiprocessing
import os
import resource
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection._validation import _fit_and_score
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing, get_tags
from threadpoolctl import threadpool_info, threadpool_limits

from kubegrid import arrays, parallel, partials, planning, prefixes
from kubegrid.context import SearchContext
from kubegrid.errors import FitError, UserError
from kubegrid.storage import Store

logger = logging.getLogger(__name__)

# A pod killed between checkpoints loses at most this much work; frequent
# enough to matter, rare enough that thousands of tiny fits are not slowed by
# an object-store write each.
CHECKPOINT_SECONDS = 5.0
CHECKPOINT_ENV = "KUBEGRID_CHECKPOINT_SECONDS"

Progress = Callable[[int], None]


def run_shard(
    ctx: SearchContext,
    shard: int,
    progress: Progress | None = None,
    workers: int = 1,
    survey: partials.Survey | None = None,
) -> dict[str, Any]:
    """Run every task of ``shard`` not already done; publish the shard's results.

    ``survey`` is the search's partial files as listed by a caller that runs
    every shard itself; without it the shard marks its plan and lists its own.
    Returns a small report: tasks run, skipped and failed, and seconds spent.
    """
    store = ctx.output()
    started = time.perf_counter()
    task_ids = ctx.plan.task_ids(shard).tolist()

    # Work a previous attempt finished is kept, never redone, even when that
    # attempt cut the search into other shards.
    if survey is None:
        other_plans = partials.mark_plan(store, ctx.fingerprint, ctx.plan.id)
        own_keys = None
    else:
        other_plans, own_keys = survey.other_plans, survey.shard_keys(shard)
    own, problems = partials.read_records(store, ctx.fingerprint, shard, own_keys)
    done = dict(own)
    if other_plans:
        everywhere, more = partials.read_records(
            store, ctx.fingerprint, keys=survey.keys if survey else None
        )
        done.update(everywhere)
        problems += more
    for problem in problems:
        logger.warning("shard %d: %s", shard, problem)
    todo = [t for t in task_ids if t not in done]
    if not todo and _published(store, ctx.fingerprint, shard, survey):
        logger.info("shard %d: all %d tasks already done", shard, len(task_ids))
        return _report(shard, task_ids, 0, done, started)
    if progress and len(task_ids) > len(todo):
        progress(len(task_ids) - len(todo))
    logger.info(
        "shard %d: %d tasks to run, %d already done",
        shard,
        len(todo),
        len(task_ids) - len(todo),
    )

    # Run the rest, in this process or spread over forked workers. Either
    # way BLAS and OpenMP get at most the container's CPUs, not the node's:
    # left to itself OpenBLAS starts a thread per core of the machine. A
    # caller's tighter limit (a local worker's share) stands.
    written: list[str] = []
    forked = workers > 1 and len(todo) > 1
    if forked:
        done.update(_run_forked(ctx, shard, todo, workers))
    else:
        with threadpool_limits(min(parallel.cpus(), threads_in_use())):
            done.update(run_tasks(ctx, shard, todo, progress, written))

    # Publish the whole shard in task order, in one atomic write. It replaces
    # the files named after this shard, so what they held for other tasks (an
    # earlier plan's shard of this number) is carried over, not lost.
    mine = set(task_ids)
    kept = {t: r for t, r in own.items() if t not in mine}
    records = [done[t] for t in sorted(mine)] + [kept[t] for t in sorted(kept)]
    # Checkpoints are dropped by name when every writer's are known: those
    # listed before this run and this process's own.
    chunks = survey.chunks(shard) + written if survey and not forked else None
    partials.write_shard(store, ctx.fingerprint, shard, records, chunks)
    return _report(shard, task_ids, len(todo), done, started)


def _published(
    store: Store, fingerprint: str, shard: int, survey: partials.Survey | None
) -> bool:
    key = partials.shard_key(fingerprint, shard)
    return key in survey.keys if survey else store.exists(key)


def run_tasks(
    ctx: SearchContext,
    shard: int,
    todo: list[int],
    progress: Progress | None = None,
    written: list[str] | None = None,
) -> dict[int, partials.Record]:
    """Run ``todo`` in order, checkpointing so a kill loses seconds, not the shard.

    The keys of the checkpoints are appended to ``written``, when given.
    """
    store = ctx.output()
    writer = uuid.uuid4().hex[:12]
    done: dict[int, partials.Record] = {}
    pending: list[partials.Record] = []
    interval = checkpoint_seconds()
    seq, last_flush = 0, time.monotonic()
    threads = threads_in_use()
    for record in _evaluate(ctx, todo):
        record["threads"] = threads
        done[record["task"]] = record
        pending.append(record)
        if progress:
            progress(1)
        if time.monotonic() - last_flush >= interval:
            partials.write_chunk(store, ctx.fingerprint, shard, writer, seq, pending)
            if written is not None:
                written.append(partials.chunk_key(ctx.fingerprint, shard, writer, seq))
            seq, pending, last_flush = seq + 1, [], time.monotonic()
    return done


def checkpoint_seconds() -> float:
    """The checkpoint interval: ``$KUBEGRID_CHECKPOINT_SECONDS`` if set, else
    ``CHECKPOINT_SECONDS``. Raises UserError for a value that is not a finite
    number of seconds, 0 or more."""
    value = os.environ.get(CHECKPOINT_ENV)
    if value is None or not value.strip():
        return CHECKPOINT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise UserError(
            f"{CHECKPOINT_ENV}={value!r}: give a number of seconds, 0 or more "
            f"(unset, it is {CHECKPOINT_SECONDS:g})"
        )
    return seconds


def _evaluate(ctx: SearchContext, todo: list[int]) -> Iterator[partials.Record]:
    """Records of ``todo``, sharing pipeline prefixes where that is exact."""
    scorers = ctx.scorers()
    plan = ctx.plan
    final_step = _shareable_final_step(ctx)
    # How many tasks each (prefix, split) unit has in the whole plan: only
    # wanted to tell a divided unit, which only a machine's cache can share.
    unit_sizes: collections.Counter[planning.PrefixKey] = collections.Counter()
    if final_step is not None and prefixes.active():
        unit_sizes.update(planning.prefix_key(p, final_step) for p in plan.candidates)

    def group_key(task: int) -> tuple[planning.PrefixKey, int]:
        candidate, split = divmod(task, plan.n_splits)
        return planning.prefix_key(plan.candidates[candidate], final_step), split

    for (prefix, _), group in itertools.groupby(todo, key=group_key):
        tasks = list(group)
        # A unit with tasks outside this run goes through the machine's cache,
        # even for one task: another process may have stored its prefix, or
        # will want the one fitted here.
        divided = len(tasks) < unit_sizes[prefix]
        if final_step is not None and (len(tasks) > 1 or divided):
            shared = _shared_prefix_output(ctx, tasks, divided)
            if shared is not None:
                # One record at a time, so each is checkpointed as it comes.
                yield from _final_steps(ctx, tasks, scorers, *shared)
                continue
        for task in tasks:
            yield run_task(ctx, task, scorers)


def run_task(ctx: SearchContext, task: int, scorers: Any) -> partials.Record:
    """Fit one candidate on one split and score it, as GridSearchCV does."""
    candidate, split = divmod(task, ctx.plan.n_splits)
    params = ctx.plan.candidates[candidate]
    train, test = ctx.splits[split]
    out = _score(
        ctx, task, clone(ctx.estimator), ctx.task_X, params, train, test, scorers
    )
    return _record(task, candidate, split, out, 0.0)


def _score(
    ctx: SearchContext,
    task: int,
    estimator: Any,
    X: Any,
    params: dict[str, Any],
    train: np.ndarray,
    test: np.ndarray,
    scorers: Any,
) -> dict[str, Any]:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out: dict[str, Any] = _fit_and_score(
                estimator,
                X,
                ctx.task_y,
                scorer=scorers,
                train=train,
                test=test,
                verbose=0,
                parameters=params,
                fit_params={},
                score_params={},
                return_train_score=ctx.spec.return_train_score,
                return_n_test_samples=True,
                return_times=True,
                error_score=ctx.spec.error_score_value,
            )
    except Exception as exc:
        # errorScore: raise asks to stop at the first failed fit. Name the
        # candidate as the grid wrote it: ``params`` may be the final step's
        # share only, when the pipeline prefix was fitted once for several.
        candidate, split = divmod(task, ctx.plan.n_splits)
        why = (
            "errorScore is 'raise'; set it to 'nan' to record failures and go on"
            if ctx.spec.error_score_value == "raise"
            else "raised outside the fit itself, where errorScore does not apply"
        )
        raise FitError(
            f"fit failed for candidate {candidate} {ctx.plan.candidates[candidate]} "
            f"on split {split}: {type(exc).__name__}: {exc} ({why})"
        ) from exc
    out["warnings"] = _warning_lines(caught)
    return out


def _warning_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    """A task's warnings, one line each and each once, for its record.

    They are collected rather than shown: a search warns once per fit, and
    scikit-learn's scoring failures carry a whole traceback each. The summary
    counts them instead. A failed score is named by its exception's line.
    """
    lines: list[str] = []
    for warning in caught:
        text = str(warning.message).strip()
        if text.startswith("Scoring failed"):
            line = f"{SCORE_FAILED}{text.splitlines()[-1]}"
        else:
            line = (
                f"{warning.category.__name__}: {text.splitlines()[0] if text else ''}"
            )
        line = line[:_WARNING_LENGTH]
        if line not in lines:
            lines.append(line)
    return lines


# How a record's warning says a score failed (its value is errorScore).
SCORE_FAILED = "scoring failed: "
_WARNING_LENGTH = 300


def _shareable_final_step(ctx: SearchContext) -> str | None:
    """The final step's name when prefix sharing gives GridSearchCV's numbers.

    Train scores are left out: a Pipeline scores its training rows through
    ``transform``, which for some steps differs in the last bits from the
    ``fit_transform`` output the final step was fitted on.
    """
    if not isinstance(ctx.estimator, Pipeline) or ctx.spec.return_train_score:
        return None
    if len(ctx.estimator.steps) < 2:
        return None
    return str(ctx.estimator.steps[-1][0])


def _shared_prefix_output(
    ctx: SearchContext, tasks: list[int], cached: bool
) -> tuple[arrays.SplitRows, float] | None:
    """The prefix fitted once on the tasks' split, and each task's share of
    what that cost this process.

    With ``cached``, the output comes from the machine's cache when another
    process stored it, and is stored for the others when fitted here. None
    when the shortcut does not apply (the prefix fails, or its output is not a
    dense array): the caller then runs each task in full, which also records
    any failure exactly as GridSearchCV would.
    """
    first_candidate, split = divmod(tasks[0], ctx.plan.n_splits)
    first_params = ctx.plan.candidates[first_candidate]
    found = (
        _cached_prefix_output(ctx, first_params, split)
        if cached
        else _timed_prefix_output(ctx, first_params, split)
    )
    if found is None:
        return None
    Xt, prefix_seconds = found
    return Xt, prefix_seconds / len(tasks)


def _final_steps(
    ctx: SearchContext,
    tasks: list[int],
    scorers: Any,
    Xt: arrays.SplitRows,
    prefix_share: float,
) -> Iterator[partials.Record]:
    """Each task's record, fitting and scoring only the final step on ``Xt``."""
    final_name, final_estimator = ctx.estimator.steps[-1]
    marker = final_name + "__"
    for task in tasks:
        candidate, split = divmod(task, ctx.plan.n_splits)
        params = ctx.plan.candidates[candidate]
        final_params = {
            k[len(marker) :]: v for k, v in params.items() if k.startswith(marker)
        }
        # A final step reading pairwise kernels selects square blocks of its
        # input, which only the whole pipeline gives it.
        estimator = clone(final_estimator)
        if _pairwise(estimator, final_params):
            yield run_task(ctx, task, scorers)
            continue
        train, test = ctx.splits[split]
        out = _score(ctx, task, estimator, Xt, final_params, train, test, scorers)
        # Every fit of the pipeline would have fitted the prefix and raised
        # its warnings: each task carries them, as in GridSearchCV.
        out["warnings"] = list(dict.fromkeys([*Xt.warnings, *out["warnings"]]))
        yield _record(task, candidate, split, out, prefix_share)


def _pairwise(estimator: Any, params: dict[str, Any]) -> bool:
    """Whether ``estimator``, given ``params`` (set on it here), reads X as
    pairwise kernels or distances."""
    try:
        return bool(get_tags(estimator.set_params(**params)).input_tags.pairwise)
    except Exception:
        return False  # a bad value fails in the fit, where errorScore applies


def _cached_prefix_output(
    ctx: SearchContext, params: dict[str, Any], split: int
) -> tuple[arrays.SplitRows, float] | None:
    """The prefix's output from the machine's cache, else fitted and stored.

    The seconds returned are those this process spent, and only those: on a
    hit, reading the entry. The process that fitted the prefix records its fit
    time in its own tasks, so summed over the search every fit is counted
    once, as the work the machine did, and neither the waiting for another
    process's fit nor the writing of an entry is called fitting.
    """
    final_step = ctx.estimator.steps[-1][0]
    name = prefixes.key(ctx.fingerprint, planning.prefix_key(params, final_step), split)
    # Claimed, so that a process reaching the same unit meanwhile waits for
    # this fit instead of doing it a second time.
    with prefixes.claimed(name):
        started = time.perf_counter()
        stored = prefixes.load(name)
        # A hit records the read alone: the fit is in the fitter's records.
        if stored is not None:
            train, test = ctx.splits[split]
            Xt = arrays.SplitRows.of(
                ctx.data.n_samples, (train, stored[0]), (test, stored[1])
            )
            Xt.warnings = tuple(str(line) for line in stored[2])
            return Xt, time.perf_counter() - started
        found = _timed_prefix_output(ctx, params, split)
        if found is not None:
            Xt = found[0]
            lines = np.array(Xt.warnings, dtype=str)
            prefixes.store(name, *(values for _, values in Xt.parts), lines)
        return found


def _timed_prefix_output(
    ctx: SearchContext, params: dict[str, Any], split: int
) -> tuple[arrays.SplitRows, float] | None:
    """The prefix fitted here, and the seconds that took."""
    started = time.perf_counter()
    Xt = _prefix_output(ctx, params, split)
    return None if Xt is None else (Xt, time.perf_counter() - started)


def _prefix_output(
    ctx: SearchContext, params: dict[str, Any], split: int
) -> arrays.SplitRows | None:
    """The prefix's output for every row, fitted on ``split``'s training rows.

    Rows in neither the training nor the test rows of the split stay zero; the
    final step never sees them. None when the prefix fails or its output is
    not a dense array.
    """
    pipeline: Pipeline = ctx.estimator
    marker = pipeline.steps[-1][0] + "__"
    train, test = ctx.splits[split]

    # The prefix, as Pipeline.fit would fit it for any candidate of the unit.
    prefix = Pipeline(clone(pipeline).steps[:-1])
    try:
        prefix.set_params(
            **{k: v for k, v in params.items() if not k.startswith(marker)}
        )
        X_train = _safe_indexing(ctx.task_X, train)
        y_train = _safe_indexing(ctx.task_y, train)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted_train = prefix.fit_transform(X_train, y_train)
            fitted_test = prefix.transform(_safe_indexing(ctx.task_X, test))
    except Exception:
        return None
    if not (
        isinstance(fitted_train, np.ndarray) and isinstance(fitted_test, np.ndarray)
    ):
        return None
    Xt = arrays.SplitRows.of(
        ctx.data.n_samples, (train, fitted_train), (test, fitted_test)
    )
    Xt.warnings = tuple(_warning_lines(caught))
    return Xt


def _record(
    task: int, candidate: int, split: int, out: dict[str, Any], extra_fit: float
) -> partials.Record:
    logger.debug(
        "candidate %d split %d: %.3fs fit, %.3fs score",
        candidate,
        split,
        out["fit_time"],
        out["score_time"],
    )
    return {
        "task": task,
        "candidate": candidate,
        "split": split,
        "test_scores": _plain(out["test_scores"]),
        "train_scores": _plain(out.get("train_scores")),
        "n_test_samples": int(out["n_test_samples"]),
        "fit_time": float(out["fit_time"]) + extra_fit,
        "score_time": float(out["score_time"]),
        "fit_error": out["fit_error"],
        "peak_memory_mb": peak_memory_mb(),
        "warnings": out["warnings"],
    }


# Set in the parent before forking; read by the workers it forks.
_forked: tuple[SearchContext, int] | None = None


def _run_forked(
    ctx: SearchContext, shard: int, todo: list[int], workers: int
) -> dict[int, partials.Record]:
    """Spread ``todo`` over forked workers, each with its share of the threads.

    Contiguous slices keep tasks that share a prefix in one worker.
    """
    global _forked
    slices = [s.tolist() for s in np.array_split(np.array(todo), workers) if len(s)]
    threads = max(1, parallel.cpus() // len(slices))
    _forked = (ctx, shard)
    try:
        # Slices are cut by count, so a unit can span two of them: the workers
        # inherit one cache and fit its prefix once between them.
        fork = multiprocessing.get_context("fork")
        with (
            prefixes.shared(),
            parallel.frozen_heap(),
            fork.Pool(
                len(slices),
                initializer=parallel.forked_worker,
                initargs=(threads, os.getpid()),
            ) as pool,
        ):
            parts = pool.map(_run_slice, slices, chunksize=1)
    finally:
        _forked = None
    done: dict[int, partials.Record] = {}
    for part in parts:
        done.update(part)
    return done


def _run_slice(todo: list[int]) -> dict[int, partials.Record]:
    assert _forked is not None
    ctx, shard = _forked
    return run_tasks(ctx, shard, todo)


def threads_in_use() -> int:
    """The most threads a BLAS or OpenMP library of this process may start."""
    return max((info["num_threads"] for info in threadpool_info()), default=1)


def peak_memory_mb() -> float:
    """This process's resident-set high-water mark so far, in MiB."""
    return resource.getrusage(_RUSAGE_PEAK).ru_maxrss / 1024.0


# Linux reports the whole process's high-water mark for the calling thread
# too, without adding up every thread's CPU time first: with BLAS threads
# spinning that sum took up to a millisecond, more than a small fit.
_RUSAGE_PEAK = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


def _plain(scores: Any) -> Any:
    """Scores as JSON-ready floats (NaN kept), preserving dict shape."""
    if scores is None:
        return None
    if isinstance(scores, dict):
        return {name: float(value) for name, value in scores.items()}
    return float(scores)


def _report(
    shard: int,
    task_ids: list[int],
    n_run: int,
    done: dict[int, Any],
    started: float,
) -> dict[str, Any]:
    mine = [done[t] for t in task_ids]
    return {
        "shard": shard,
        "tasks": len(task_ids),
        "run": n_run,
        "skipped": len(task_ids) - n_run,
        "failed": sum(1 for r in mine if r.get("fit_error")),
        "seconds": round(time.perf_counter() - started, 3),
        "fitSeconds": round(sum(r["fit_time"] + r["score_time"] for r in mine), 3),
    }
