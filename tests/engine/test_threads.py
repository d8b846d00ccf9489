"""Two levels of parallelism never multiply past the CPUs, and the results
say how many threads each fit had.

The CPU budget is what this process may run on (its cgroup quota, else its
affinity); worker processes share it out and BLAS/OpenMP get the rest.
"""

from __future__ import annotations

import gc
import multiprocessing
import pathlib
import threading

import numpy as np
import pytest

from kubegrid import context, execution, local, parallel, reducer, results
from kubegrid import spec as specs
from tests.engine.searches import manifest, write_dataset


@pytest.mark.parametrize("workers", [1, 2])
def test_fits_get_the_cpus_their_worker_leaves_and_say_so(
    tmp_path: pathlib.Path, workers: int
) -> None:
    """Each fit's BLAS threads are the CPUs divided among the workers; the
    count is in cv_results (n_threads) and the summary, refit included."""
    dataset = write_dataset(tmp_path, "diabetes")
    document = manifest(
        dataset,
        tmp_path / "out",
        estimator={"class": "sklearn.linear_model.Ridge"},
        param_grid={"alpha": [0.1, 1.0, 10.0, 100.0]},
        cv=3,
    )
    ctx = context.prepare(specs.parse(document))

    summary = local.run(ctx, workers)

    expected = max(1, parallel.cpus() // min(workers, ctx.plan.n_shards))
    table = results.read_cv_results(ctx.output())
    assert np.all(np.asarray(table["n_threads"]) == expected)
    assert summary["threads"]["fit"] == expected
    assert 1 <= summary["threads"]["refit"] <= parallel.cpus()
    # Each fit's peak memory is there too, for sizing resources.limits.memory.
    peaks = np.asarray(table["max_peak_memory_mb"])
    assert peaks.shape == (len(table["params"]),) and np.all(peaks > 10)


def test_peak_memory_is_the_whole_processs_high_water_mark() -> None:
    """Read from a task's thread, it still counts what every thread allocated."""
    before = execution.peak_memory_mb()
    seen: list[float] = []

    def allocate() -> None:
        block = np.ones(int(before + 40) * 2**20 // 8)  # 40 MiB above the peak
        seen.append(float(block.sum()))

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert seen and execution.peak_memory_mb() >= before + 40


def test_progress_from_worker_processes_counts_every_task_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The progress callback climbs to exactly the number of tasks, never
    back, and its last report comes before the reduce starts."""
    dataset = write_dataset(tmp_path, "diabetes")
    document = manifest(
        dataset,
        tmp_path / "out",
        estimator={"class": "sklearn.linear_model.Ridge"},
        param_grid={"alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]},
        cv=4,
    )
    ctx = context.prepare(specs.parse(document), n_shards=5)
    seen: list[tuple[int, int]] = []
    reduced_after: list[int] = []

    def reduce(*args: object, **kwargs: object) -> dict[str, object]:
        reduced_after.append(len(seen))
        return real_reduce(*args, **kwargs)

    real_reduce = reducer.reduce_recovering
    monkeypatch.setattr(reducer, "reduce_recovering", reduce)
    local.run(ctx, 2, on_progress=lambda done, total: seen.append((done, total)))

    counts = [done for done, _ in seen]
    assert counts == sorted(counts)
    assert seen[-1] == (ctx.plan.n_tasks, ctx.plan.n_tasks)
    assert reduced_after == [len(seen)]


def _frozen_objects(_: int) -> int:
    return gc.get_freeze_count()


def test_processes_forked_in_a_frozen_heap_leave_inherited_objects_alone() -> None:
    """Inside the block the parent's objects are frozen, in the forked children
    too (their collections skip them); after it, nothing stays frozen."""
    assert gc.get_freeze_count() == 0
    with parallel.frozen_heap():
        assert gc.get_freeze_count() > 1000
        with multiprocessing.get_context("fork").Pool(2) as pool:
            counts = pool.map(_frozen_objects, range(2))
    assert min(counts) > 1000
    assert gc.get_freeze_count() == 0
