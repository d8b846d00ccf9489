"""``kubegrid run``: a whole search on this machine, no cluster needed.

Called by the CLI. The data is loaded once in this process; worker processes
are forked from it, so they share its arrays copy-on-write instead of each
reading the dataset again. Each worker runs whole shards, exactly as a pod
would, and the same reducer merges them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from kubegrid import execution, parallel, partials, prefixes
from kubegrid.context import SearchContext

logger = logging.getLogger(__name__)

# Set in the parent before forking; read by the workers it forks.
_context: SearchContext | None = None
_events: Any = None
_survey: partials.Survey | None = None


def default_workers(ctx: SearchContext) -> int:
    """Workers that, with each estimator's own n_jobs, fill the CPUs exactly."""
    return parallel.budget(ctx.plan.n_tasks, ctx.estimator_jobs()).workers


def run(
    ctx: SearchContext,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run every shard in a pool of ``workers`` processes, then reduce.

    ``on_progress(done, total)`` is called as tasks finish.
    """
    workers = min(workers or default_workers(ctx), ctx.plan.n_shards)
    shards = list(range(ctx.plan.n_shards))
    _run_shards(ctx, shards, workers, on_progress)
    from kubegrid import reducer

    return reducer.reduce_recovering(
        ctx, lambda missing: _run_shards(ctx, missing, workers, on_progress)
    )


def _run_shards(
    ctx: SearchContext,
    shards: list[int],
    workers: int,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    global _context, _events, _survey
    total = ctx.plan.n_tasks
    # Every shard runs on this machine: the plan is marked and the partial
    # files listed once, here, instead of by each shard.
    survey = partials.survey(ctx.output(), ctx.fingerprint, ctx.plan.id)
    if workers == 1:
        done = 0

        def bump(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress(done, total)

        # Shards run one after another here: a unit cut between two is
        # fitted at the end of the first and read back at the start of the
        # next. The cache holds only such units, so it costs next to nothing.
        with prefixes.shared():
            for shard in shards:
                execution.run_shard(ctx, shard, bump, survey=survey)
        return

    # Fork workers from this process so they inherit the loaded data and the
    # cache of prefixes, through which a unit cut between two shards is fitted
    # once. Two levels of parallelism must not multiply: each worker gets its
    # share of the cores for BLAS and OpenMP.
    fork = multiprocessing.get_context("fork")
    _context, _events, _survey = ctx, fork.SimpleQueue(), survey
    threads = max(1, parallel.cpus() // workers)
    try:
        with (
            prefixes.shared(),
            parallel.frozen_heap(),
            fork.Pool(
                workers,
                initializer=parallel.forked_worker,
                initargs=(threads, os.getpid()),
            ) as pool,
        ):
            # Woken by the last shard's end rather than at the next poll, so
            # the reduce starts at once; progress is drained meanwhile.
            finished = threading.Event()
            pending = pool.map_async(
                _run_one,
                shards,
                chunksize=1,
                callback=lambda _: finished.set(),
                error_callback=lambda _: finished.set(),
            )
            _load_reduce_stage()
            done = 0

            def drain() -> None:
                nonlocal done
                done += _drain(_events)
                if on_progress:
                    on_progress(done, total)

            while not finished.wait(0.2):
                drain()
            drain()  # a shard queues its progress before it returns
            pending.get()  # re-raises a worker's error here
    finally:
        _context, _events, _survey = None, None, None


def _load_reduce_stage() -> None:
    """Import the reducer (matplotlib, pyarrow, joblib) while the workers fit.

    This process only waits for them meanwhile, and the imports take a few
    tenths of a second that would otherwise come after the last fit.
    """
    import kubegrid.reducer  # noqa: F401


def _drain(events: Any) -> int:
    count = 0
    try:
        while not events.empty():
            count += events.get()
    except (EOFError, OSError, queue.Empty):
        pass
    return count


def _run_one(shard: int) -> dict[str, Any]:
    assert _context is not None
    events = _events
    return execution.run_shard(
        _context, shard, events.put if events else None, survey=_survey
    )
