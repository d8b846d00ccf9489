"""The machine-local cache of fitted pipeline prefixes, on its own.

Real files in a real temporary directory, and real forked processes where
the cache's point is sharing between them.
"""

from __future__ import annotations

import multiprocessing
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
import pytest

from kubegrid import prefixes

FINGERPRINT = "0123456789abcdef"
PREFIX = (("scale__with_std", "True"),)


def _output(rows: int = 30, columns: int = 4) -> np.ndarray:
    values = np.random.default_rng(0).normal(size=(rows, columns)).astype(np.float32)
    values[3, 1] = np.nan
    return values


def test_an_output_stored_is_loaded_bit_for_bit() -> None:
    """Inside shared(), load gives back the stored array: values (NaN too),
    dtype, shape and bytes."""
    name = prefixes.key(FINGERPRINT, PREFIX, 2)
    output = _output()
    with prefixes.shared():
        assert prefixes.load(name) is None
        assert prefixes.store(name, output)
        loaded = prefixes.load(name)
    assert loaded is not None
    (part,) = loaded
    assert part.dtype == output.dtype and part.shape == output.shape
    assert part.tobytes() == output.tobytes()


def test_several_arrays_come_back_in_their_order_and_layouts() -> None:
    """A split's training and test outputs are one entry, each array back in
    the memory layout it was stored in: column-major stays column-major."""
    name = prefixes.key(FINGERPRINT, PREFIX, 3)
    train = np.asfortranarray(_output(rows=20))
    test = np.ascontiguousarray(_output(rows=10))
    with prefixes.shared():
        assert prefixes.store(name, train, test)
        loaded = prefixes.load(name)
    assert loaded is not None and len(loaded) == 2
    for got, stored in zip(loaded, (train, test), strict=True):
        np.testing.assert_array_equal(got, stored)
        assert got.strides == stored.strides


def test_keys_tell_searches_prefixes_and_splits_apart() -> None:
    """Changing the fingerprint, the prefix or the split changes the key."""
    names = {
        prefixes.key(FINGERPRINT, PREFIX, 0),
        prefixes.key("fedcba9876543210", PREFIX, 0),
        prefixes.key(FINGERPRINT, (("scale__with_std", "False"),), 0),
        prefixes.key(FINGERPRINT, PREFIX, 1),
    }
    assert len(names) == 4
    assert prefixes.key(FINGERPRINT, PREFIX, 0) == prefixes.key(FINGERPRINT, PREFIX, 0)


def test_nothing_is_cached_outside_shared() -> None:
    """Without a shared() block, store keeps nothing and load finds nothing;
    the block's directory is gone once it ends."""
    name = prefixes.key(FINGERPRINT, PREFIX, 0)
    assert not prefixes.active()
    assert not prefixes.store(name, _output())
    assert prefixes.load(name) is None
    with prefixes.claimed(name):  # no lock to take, and no error
        pass

    with prefixes.shared():
        assert prefixes.active()
        directory = prefixes._directory
        assert directory is not None and directory.is_dir()
        assert prefixes.store(name, _output())
    assert not prefixes.active()
    assert not directory.exists()
    assert prefixes.load(name) is None


def test_a_nested_block_uses_the_outer_cache() -> None:
    """A shared() inside another keeps its entries for the rest of the outer."""
    name = prefixes.key(FINGERPRINT, PREFIX, 0)
    with prefixes.shared():
        with prefixes.shared():
            assert prefixes.store(name, _output())
        assert prefixes.load(name) is not None


def test_an_entry_over_its_budget_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An output larger than MAX_ENTRY_BYTES is not stored."""
    output = _output()
    monkeypatch.setattr(prefixes, "MAX_ENTRY_BYTES", output.nbytes - 1)
    name = prefixes.key(FINGERPRINT, PREFIX, 0)
    with prefixes.shared():
        assert not prefixes.store(name, output)
        assert prefixes.load(name) is None


def test_the_cache_stops_taking_entries_past_its_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the stored entries would pass MAX_TOTAL_BYTES, new ones are
    refused and the old ones stay."""
    output = _output()
    monkeypatch.setattr(prefixes, "MAX_TOTAL_BYTES", output.nbytes * 3 // 2)
    first, second = (prefixes.key(FINGERPRINT, PREFIX, s) for s in (0, 1))
    with prefixes.shared():
        assert prefixes.store(first, output)
        assert not prefixes.store(second, output)
        assert prefixes.load(first) is not None
        assert prefixes.load(second) is None


def test_an_array_of_objects_is_refused_without_error() -> None:
    """Object arrays need pickle to be written: they are refused, not raised."""
    name = prefixes.key(FINGERPRINT, PREFIX, 0)
    with prefixes.shared():
        assert not prefixes.store(name, np.array(["a", None], dtype=object))
        assert prefixes.load(name) is None
        assert not list(pathlib.Path(str(prefixes._directory)).iterdir())


def _store_in_child(name: str) -> None:
    prefixes.store(name, _output())


def test_a_forked_process_shares_the_cache() -> None:
    """A process forked inside shared() stores where its parent loads."""
    name = prefixes.key(FINGERPRINT, PREFIX, 0)
    fork = multiprocessing.get_context("fork")
    with prefixes.shared():
        child = fork.Process(target=_store_in_child, args=(name,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        loaded = prefixes.load(name)
    assert loaded is not None and loaded[0].tobytes() == _output().tobytes()


def _fit_while_claimed(name: str, holding: Any) -> None:
    with prefixes.claimed(name):
        holding.set()
        prefixes.store(name, _output())


def test_a_claimed_entry_is_waited_for_not_fitted_twice() -> None:
    """While one process holds an entry's claim, another claiming it waits,
    and then finds the entry the first stored."""
    name = prefixes.key(FINGERPRINT, PREFIX, 0)
    fork = multiprocessing.get_context("fork")
    with prefixes.shared():
        holding = fork.Event()
        child = fork.Process(target=_fit_while_claimed, args=(name, holding))
        child.start()
        assert holding.wait(60)
        with prefixes.claimed(name):
            loaded = prefixes.load(name)
        child.join(60)
    assert loaded is not None and loaded[0].tobytes() == _output().tobytes()


def test_a_cache_left_by_a_killed_process_is_removed(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a cache removes those of processes that ended without cleaning
    up, and leaves alone those of processes still running."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        orphan = tmp_path / f"kubegrid-prefixes-{ended.stdout.strip()}-abc"
        in_use = tmp_path / f"kubegrid-prefixes-{running.pid}-def"
        for directory in (orphan, in_use):
            directory.mkdir()
            (directory / "entry.npz").write_bytes(b"x")
        with prefixes.shared():
            assert prefixes._directory is not None
            assert prefixes._directory.parent == tmp_path
        assert not orphan.exists()
        assert (in_use / "entry.npz").exists()
    finally:
        running.kill()
        running.wait()
