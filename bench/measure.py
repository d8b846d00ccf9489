"""Measuring one child process tree: wall time, CPU seconds, peak memory.

Called by the comparison, the W4 data runs and the probes. Every contender is
a direct child of the benchmark process, so each is measured by the same
means:

* wall time around ``Popen`` … ``wait``;
* CPU seconds as the delta of ``getrusage(RUSAGE_CHILDREN)``: it counts every
  descendant its parent has reaped (pool and loky workers are reaped before
  their parent exits);
* peak memory by polling ``/proc`` for the whole tree: the sum of RSS, which
  counts a page shared by forked workers once per process, and the sum of PSS,
  which splits a shared page among its sharers and so is the tree's real
  footprint;
* the CPU that *other* processes took meanwhile (busy time in ``/proc/stat``
  less ours): on a shared machine this says how far a number can be trusted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Five samples a second. Reading smaps_rollup is not free: at 20 a second the
# polling took ~10 % of a core in the first full run (bench/README.md), too
# much on a 2-core machine; runs last seconds, so 0.2 s still finds the peak.
POLL_SECONDS = 0.2


class ChildFailed(RuntimeError):
    """A measured command exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class Measurement:
    """One run of one command. Memory in MiB, times in seconds."""

    wall_seconds: float
    cpu_seconds: float
    parent_cpu_seconds: float
    peak_rss_mb: float
    peak_pss_mb: float
    peak_processes: int
    foreign_cpu_seconds: float
    stdout: str


def run(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    log: Path | None = None,
) -> Measurement:
    """Run ``command`` to completion and measure it and its descendants.

    ``parent_cpu_seconds`` is what this process spent meanwhile: the loopback
    S3 server's threads live here, so it is the object store's cost.
    Raises ChildFailed when the command exits non-zero.
    """
    err_path = log or Path(os.devnull)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    busy_before = machine_busy_seconds()
    with open(err_path, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        peak_rss = peak_pss = 0.0
        peak_procs = 0
        # stdout is small (one JSON line or a short table); the pipe holds it
        # while we poll, and communicate() drains it at the end.
        while True:
            rss, pss, count = tree_memory_mb(proc.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            peak_procs = max(peak_procs, count)
            # wait(), not sleep(): the exit is seen at once, not up to a
            # poll interval late, so wall time carries no polling bias.
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                continue
        stdout, _ = proc.communicate()
        wall = time.perf_counter() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    busy = machine_busy_seconds() - busy_before
    if proc.returncode != 0:
        tail = Path(err_path).read_text()[-3000:] if log else ""
        raise ChildFailed(f"{' '.join(command)} exited with {proc.returncode}:\n{tail}")
    ours = _cpu(children_after) - _cpu(children_before)
    parent = _cpu(self_after) - _cpu(self_before)
    return Measurement(
        wall_seconds=wall,
        cpu_seconds=ours,
        parent_cpu_seconds=parent,
        foreign_cpu_seconds=max(0.0, busy - ours - parent),
        peak_rss_mb=peak_rss,
        peak_pss_mb=peak_pss,
        peak_processes=peak_procs,
        stdout=stdout,
    )


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds every core has spent busy since boot (``/proc/stat``)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: all but idle and iowait.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def tree_memory_mb(root: int) -> tuple[float, float, int]:
    """Sum of RSS and of PSS over ``root`` and its descendants, and their count."""
    rss = pss = 0.0
    pids = descendants(root)
    for pid in pids:
        sizes = _rollup_kb(pid)
        rss += sizes.get("Rss", 0) / 1024.0
        pss += sizes.get("Pss", 0) / 1024.0
    return rss, pss, len(pids)


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (they may vanish while we look)."""
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(_children(pid))
    return found


def _children(pid: int) -> list[int]:
    # A child is listed under the thread that forked it, so read every thread.
    kids: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                kids.extend(int(k) for k in handle.read().split())
        except OSError:
            continue
    return kids


def _rollup_kb(pid: int) -> dict[str, int]:
    sizes: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    sizes[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return sizes
