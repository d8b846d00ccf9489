"""Fitted pipeline prefixes, shared by every process of one machine.

Called by the shard runner. A pipeline's prefix (every step but the last)
fitted on one split gives the same output for every candidate that leaves
those steps alone, so a shard fits it once per split. Shards are cut on
(prefix, split) units where a cut is near, but a unit can still span two
shards, or two workers' slices of one shard; here the second process finds
the output the first stored and fits nothing.

The cache is a temporary directory that :func:`shared` opens in the process
that then forks the workers (``kubegrid run``, or a pod spreading its shard
over slices); it lives as long as that block, and one left behind by a killed
process is removed by the next block opened on the machine. Outside one,
nothing is cached.

A process fits an entry while holding its lock (:func:`claimed`), so another
process after the same entry waits for it rather than fitting it a second
time; entries are written whole or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# An output larger than this is refitted rather than written to scratch disk,
# and the cache stops taking entries past the total: a pod's /tmp is an
# emptyDir counted against its ephemeral-storage limit, and a laptop's /tmp
# is often a tmpfs held in memory. Workers storing at the same moment can
# each pass the total check, so it can be exceeded by one entry per worker.
MAX_ENTRY_BYTES = 256 << 20
MAX_TOTAL_BYTES = 1 << 30

# Set in the process that forks the workers; they inherit it.
_directory: Path | None = None

# Each cache is named after the process that opened it, so that one left by a
# killed process can be told from one in use.
_NAME = "kubegrid-prefixes-"


@contextlib.contextmanager
def shared() -> Iterator[None]:
    """Cache prefixes for this process and those it forks inside the block.

    Nested blocks (and a forked worker's own) use the outer block's cache.
    """
    global _directory
    if _directory is not None:
        yield
        return
    # A killed run cannot remove its cache; the next one does.
    _remove_orphans()
    # A machine without a writable temporary directory only loses the cache.
    try:
        scratch = tempfile.TemporaryDirectory(
            prefix=f"{_NAME}{os.getpid()}-", ignore_cleanup_errors=True
        )
    except OSError as exc:
        logger.warning("pipeline prefixes not shared between processes: %s", exc)
        yield
        return
    with scratch as directory:
        _directory = Path(directory)
        try:
            yield
        finally:
            _directory = None


def _remove_orphans() -> None:
    """Remove the caches of processes that no longer run.

    A process in another PID namespace sharing this temporary directory can
    look dead; losing its cache only costs it refits, never a wrong result.
    """
    try:
        found = list(Path(tempfile.gettempdir()).glob(f"{_NAME}*"))
    except OSError:
        return
    for directory in found:
        pid = directory.name.removeprefix(_NAME).partition("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            logger.debug("removing %s, left by a process that ended", directory)
            shutil.rmtree(directory, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        # Another user's process: running, and not ours to clean up after.
        return True
    return True


def active() -> bool:
    """Whether a :func:`shared` block is open in this process or its parent."""
    return _directory is not None


def key(fingerprint: str, prefix: object, split: int) -> str:
    """The entry's name: one search, one prefix, one split."""
    text = f"{fingerprint}|{prefix!r}|{split}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@contextlib.contextmanager
def claimed(name: str) -> Iterator[None]:
    """Hold entry ``name`` while looking it up and fitting it.

    Another process claiming the same entry waits until this block ends, then
    finds the stored output (or, when it was over the budget, fits it after
    all: a wait no longer than the fit it would have run alongside). The lock
    is an ``flock``, so a worker killed while holding it releases it. Outside
    :func:`shared` nothing is locked.
    """
    if _directory is None:
        yield
        return
    try:
        handle = open(_directory / f"{name}.lock", "wb")  # noqa: SIM115
    except OSError as exc:
        logger.debug("prefix %s not locked: %s", name, exc)
        yield
        return
    # Closing the file releases the lock, whatever happens in the block. A
    # file system without locks only costs the chance of a second fit.
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:
            logger.debug("prefix %s not locked: %s", name, exc)
        yield


def load(name: str) -> tuple[np.ndarray, ...] | None:
    """The stored arrays, in the order and memory layout they were stored in;
    None when no process stored them (or no cache)."""
    if _directory is None:
        return None
    try:
        with np.load(_directory / f"{name}.npz", allow_pickle=False) as entry:
            return tuple(entry[f"arr_{i}"] for i in range(len(entry.files)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, KeyError) as exc:
        logger.warning("prefix %s unreadable, fitting it again: %s", name, exc)
        return None


def store(name: str, *output: np.ndarray) -> bool:
    """Keep the ``output`` arrays for the other processes, when they fit the
    budget.

    Returns whether they were stored. Never raises: a refusal only costs
    another process a refit.
    """
    if _directory is None:
        return False
    refusal = _refusal(_directory, output)
    if refusal:
        logger.debug("prefix %s not cached: %s", name, refusal)
        return False
    temporary: str | None = None
    try:
        fd, temporary = tempfile.mkstemp(dir=_directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, *output, allow_pickle=False)
        # Readers see the whole entry or none: a rename is atomic.
        os.replace(temporary, _directory / f"{name}.npz")
    except (OSError, ValueError) as exc:
        # A full scratch disk only costs a refit elsewhere.
        logger.debug("prefix %s not cached: %s", name, exc)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        return False
    return True


def _refusal(directory: Path, output: tuple[np.ndarray, ...]) -> str | None:
    """Why ``output`` is not to be stored, or None when it may be."""
    # Object arrays cannot be written without pickle, which is not read back.
    if any(part.dtype.hasobject for part in output):
        return "an array of Python objects"
    nbytes = sum(part.nbytes for part in output)
    if nbytes > MAX_ENTRY_BYTES:
        return f"{nbytes} bytes, over the {MAX_ENTRY_BYTES} per entry"
    try:
        used = sum(p.stat().st_size for p in directory.glob("*.npz"))
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        return str(exc)
    if used + nbytes > MAX_TOTAL_BYTES:
        return f"the cache holds {used} bytes of its {MAX_TOTAL_BYTES}"
    # Scratch space is shared with the data loader and joblib: leave it half.
    if nbytes > free // 2:
        return f"only {free} bytes free in {directory}"
    return None
