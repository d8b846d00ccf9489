"""Running one shard: fit and score its tasks, checkpointing as it goes.

Called by ``kubegrid run-shard`` in a pod and by the local pool of
``kubegrid run``. Each task is scored by scikit-learn's own ``_fit_and_score``,
the function GridSearchCV calls, so every number, NaN and failure message
matches what GridSearchCV would produce on the same split.
"""

from __future__ import annotations

import logging
import resource
import time
import uuid
from collections.abc import Callable
from typing import Any

from kubegrid import partials
from kubegrid.context import SearchContext
from kubegrid.errors import FitError
from sklearn.base import clone
from sklearn.model_selection._validation import _fit_and_score

logger = logging.getLogger(__name__)

# A pod killed between checkpoints loses at most this much work; frequent
# enough to matter, rare enough that thousands of tiny fits are not slowed by
# an object-store write each.
CHECKPOINT_SECONDS = 5.0

Progress = Callable[[int], None]


def run_shard(
    ctx: SearchContext, shard: int, progress: Progress | None = None
) -> dict[str, Any]:
    """Run every task of ``shard`` not already done; publish the shard's results.

    Returns a small report: tasks run, skipped and failed, and seconds spent.
    """
    store = ctx.output()
    started = time.perf_counter()
    task_ids = ctx.plan.task_ids(shard).tolist()

    # Work a previous attempt finished is kept, never redone.
    done, problems = partials.read_records(store, ctx.fingerprint, shard)
    for problem in problems:
        logger.warning("shard %d: %s", shard, problem)
    finished_file = partials.shard_key(ctx.fingerprint, shard)
    todo = [t for t in task_ids if t not in done]
    if not todo and store.exists(finished_file):
        logger.info("shard %d: all %d tasks already done", shard, len(task_ids))
        return _report(shard, len(task_ids), 0, done, started)
    if progress and len(task_ids) > len(todo):
        progress(len(task_ids) - len(todo))

    # Run the rest, checkpointing so that a kill loses seconds, not the shard.
    writer = uuid.uuid4().hex[:12]
    pending: list[partials.Record] = []
    seq = 0
    last_flush = time.monotonic()
    scorers = ctx.scorers()
    for task in todo:
        record = run_task(ctx, task, scorers)
        done[task] = record
        pending.append(record)
        if progress:
            progress(1)
        if time.monotonic() - last_flush >= CHECKPOINT_SECONDS:
            partials.write_chunk(store, ctx.fingerprint, shard, writer, seq, pending)
            seq, pending, last_flush = seq + 1, [], time.monotonic()

    # Publish the whole shard in task order, in one atomic write.
    records = [done[t] for t in sorted(task_ids)]
    partials.write_shard(store, ctx.fingerprint, shard, records)
    return _report(shard, len(task_ids), len(todo), done, started)


def run_task(ctx: SearchContext, task: int, scorers: Any) -> partials.Record:
    """Fit one candidate on one split and score it, as GridSearchCV does."""
    candidate, split = divmod(task, ctx.plan.n_splits)
    params = ctx.plan.candidates[candidate]
    train, test = ctx.splits[split]
    try:
        out = _fit_and_score(
            clone(ctx.estimator),
            ctx.data.X,
            ctx.data.y,
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
        # errorScore: raise asks to stop at the first failed fit.
        raise FitError(
            f"fit failed for candidate {candidate} {params} on split {split}: "
            f"{type(exc).__name__}: {exc} (errorScore is 'raise'; set it to 'nan' "
            "to record failures and go on)"
        ) from exc
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
        "fit_time": float(out["fit_time"]),
        "score_time": float(out["score_time"]),
        "fit_error": out["fit_error"],
        "peak_memory_mb": peak_memory_mb(),
    }


def peak_memory_mb() -> float:
    """This process's resident-set high-water mark so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _plain(scores: Any) -> Any:
    """Scores as JSON-ready floats (NaN kept), preserving dict shape."""
    if scores is None:
        return None
    if isinstance(scores, dict):
        return {name: float(value) for name, value in scores.items()}
    return float(scores)


def _report(
    shard: int, n_tasks: int, n_run: int, done: dict[int, Any], started: float
) -> dict[str, Any]:
    failed = sum(1 for r in done.values() if r.get("fit_error"))
    return {
        "shard": shard,
        "tasks": n_tasks,
        "run": n_run,
        "skipped": n_tasks - n_run,
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 3),
        "fitSeconds": round(
            sum(r["fit_time"] + r["score_time"] for r in done.values()), 3
        ),
    }
