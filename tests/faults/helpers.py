"""What the fault tests share: the ``kubegrid`` program and how to run it.

The faults here hit a real process (a pod's), so the code under test runs as
the ``kubegrid`` command in a subprocess, started and killed by the test.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

KUBEGRID = str(pathlib.Path(sys.executable).parent / "kubegrid")

# A generous bound on waiting for a process to reach a state; reaching it is
# what the tests assert, never how fast.
PATIENCE_SECONDS = 120.0


def kubegrid(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``kubegrid ARGS`` to its end, output captured."""
    return subprocess.run(
        [KUBEGRID, *args],
        env=os.environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )


def start(
    *args: str, env: dict[str, str] | None = None, log: pathlib.Path
) -> subprocess.Popen[bytes]:
    """Start ``kubegrid ARGS`` in the background, its output going to ``log``."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [KUBEGRID, *args],
            env=os.environ | (env or {}),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def wait_until(
    process: subprocess.Popen[bytes], reached: Callable[[], bool], what: str
) -> None:
    """Poll until ``reached()``; fail if the process ends or never gets there."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not reached():
        if process.poll() is not None:
            raise AssertionError(f"kubegrid ended (code {process.returncode}) {what}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"kubegrid never got to {what}")
        time.sleep(0.005)


def processes_running(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker`` (zombies excluded)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue  # it ended while we looked
        if marker.encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for_none(marker: str) -> list[int]:
    """Wait until no live process holds ``marker``; those still there at the end."""
    deadline = time.monotonic() + PATIENCE_SECONDS / 12
    while (left := processes_running(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def last_json_line(text: str) -> dict[str, Any]:
    """The JSON report ``run-shard`` and ``reduce`` print as their last line."""
    report: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return report
