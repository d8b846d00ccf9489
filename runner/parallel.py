"""How many worker processes and threads a process may use, never oversubscribed.

Called by the shard runner in a pod and by ``kubegrid run``. The budget is the
CPU the container may really use: its cgroup quota when it has one (a pod's
``resources.limits.cpu``), else the CPUs this process may be scheduled on. It
is shared out in two levels that multiply: worker processes, and inside each
the threads of BLAS/OpenMP and of an estimator's own ``n_jobs``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


@dataclass(frozen=True)
class Budget:
    """Worker processes and threads per worker; their product fits the CPUs."""

    cpus: int
    workers: int
    threads: int
    estimator_jobs: int

    def as_dict(self) -> dict[str, int]:
        return {
            "cpus": self.cpus,
            "workers": self.workers,
            "threadsPerWorker": self.threads,
            "estimatorJobs": self.estimator_jobs,
        }


def cpu_limit() -> float | None:
    """The cgroup CPU quota in CPUs, or None when the cgroup sets none."""
    try:
        quota, period = _CGROUP_V2.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(_CGROUP_V1_QUOTA.read_text())
        period_us = int(_CGROUP_V1_PERIOD.read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def cpus() -> int:
    """Whole CPUs this process may use: the quota if any, capped by affinity."""
    usable = len(os.sched_getaffinity(0))
    limit = cpu_limit()
    if limit is None:
        return usable
    # A fractional quota (1.5 CPUs) cannot keep two busy processes fed.
    return max(1, min(usable, math.floor(limit)))


# prctl(2) option: the signal a process gets when its parent thread dies.
_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the garbage collector of forked processes off the parent's objects.

    Processes forked inside share the parent's memory copy-on-write. A full
    collection in one of them would walk every object inherited (the modules
    of scikit-learn, scipy and pandas, the data) and write to each one's
    header, copying those pages into the child: time taken from its fits and
    memory counted twice. Frozen objects are left out of every collection;
    they are thawed when the block ends, so nothing the parent drops later
    is kept alive.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def forked_worker(threads: int, parent: int) -> None:
    """Initialise a forked worker: its share of threads, and its parent's fate.

    A worker waits on a pipe that its siblings hold open too, so when the
    parent is killed (SIGKILL, an OOM kill) no end-of-file ever wakes it: it
    would wait forever. On Linux the kernel kills it with its parent instead.
    """
    threadpool_limits(limits=threads)
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """In a forked process: be killed when ``parent`` dies (Linux only)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have died before the request above was made.
    if os.getppid() != parent:
        os._exit(1)


def estimator_jobs(params: list[dict[str, Any]]) -> int:
    """The largest ``n_jobs`` an estimator will use, given its params and grid.

    ``-1`` means "every CPU", which the budget counts as all of them.
    """
    largest = 1
    for mapping in params:
        for name, value in mapping.items():
            if name == "n_jobs" or name.endswith("__n_jobs"):
                if value == -1 or (isinstance(value, int) and value < -1):
                    return -1
                if isinstance(value, int):
                    largest = max(largest, value)
    return largest


def budget(n_tasks: int, jobs: int = 1, total: int | None = None) -> Budget:
    """Split ``total`` CPUs between workers and threads for ``n_tasks`` tasks.

    An estimator that runs ``jobs`` threads of its own gets that many CPUs per
    worker, so that the search's parallelism and the estimator's never
    multiply past the machine.
    """
    total = total or cpus()
    per_worker = total if jobs == -1 else max(1, min(jobs, total))
    workers = max(1, min(total // per_worker, n_tasks))
    threads = max(1, total // workers)
    return Budget(total, workers, threads, per_worker)
