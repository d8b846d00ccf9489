"""The kopf operator as a real subprocess, pointed at the emulator.

Role: `fixtures.operator` builds these; end-to-end tests start the operator,
SIGKILL it mid-search to test recovery, and start it again. It runs::

    python -m kopf run --standalone -A --liveness=http://127.0.0.1:<port>/healthz \
        -m kubegrid.operator.handlers

with KUBECONFIG pointing at the emulator and its output in a log file.

Readiness means: the liveness endpoint answers 200, and (when `watch` names
a resource plural) the operator has opened a watch on it in the emulator.

The working directory is a temp dir on purpose: a subprocess started in the
repository root would put it first on sys.path, where `operator/` shadows the
standard library's `operator` module.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from tests.support.kube import Kube

DEFAULT_MODULE = "kubegrid.operator.handlers"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """One kopf operator subprocess that can be started, killed and restarted.

    Args:
        kube: the started emulator the operator talks to.
        workdir: where the log files and the working directory go.
        module: the handler module for ``kopf run -m``; None to use `paths`.
        paths: handler files for ``kopf run <path>`` (alternative to modules).
        env: extra environment variables for the operator.
        extra_args: more ``kopf run`` options, e.g. ``["--verbose"]``.
        watch: a resource plural whose watch marks readiness; None to skip.
    """

    def __init__(
        self,
        kube: Kube,
        workdir: pathlib.Path,
        *,
        module: str | None = DEFAULT_MODULE,
        paths: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = ("--verbose",),
        watch: str | None = "gridsearches",
    ) -> None:
        self.kube = kube
        self.workdir = workdir
        self.module = module
        self.paths = list(paths)
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.watch = watch
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.generation = 0  # how many times it was started
        self.log_path = workdir / "operator-0.log"

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "kopf", "run", "--standalone", "-A"]
        argv += [f"--liveness={self.liveness_url}", *self.extra_args]
        if self.module:
            argv += ["-m", self.module]
        return argv + self.paths

    def start(self, timeout: float = 30.0) -> OperatorProcess:
        """Start the operator and wait until it is ready (see the module docstring)."""
        if self.running:
            raise RuntimeError(
                "the operator is already running; kill() or stop() it first"
            )
        self.generation += 1
        self.port = free_port()
        self.log_path = self.workdir / f"operator-{self.generation}.log"
        cwd = self.workdir / "cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "KUBECONFIG": str(self.kube.kubeconfig), **self.env}
        since = self.kube.mark()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv(),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(since, timeout)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wait_ready(self, since: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"the operator exited early:\n{self.log()}")
            if self._alive() and self._watching(since):
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"the operator was not ready in {timeout}s:\n{self.log()}")

    def _alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _watching(self, since: int) -> bool:
        if self.watch is None:
            return True
        return self.kube.count(since=since, action="watch", plural=self.watch) > 0

    def kill(self) -> None:
        """SIGKILL the operator's process group: no cleanup handlers run."""
        self._signal(signal.SIGKILL, grace=0)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        self._signal(signal.SIGTERM, grace=grace)

    def restart(self, timeout: float = 30.0) -> OperatorProcess:
        """SIGKILL (like a crashed pod) and start again, logging to a new file."""
        self.kill()
        return self.start(timeout=timeout)

    def _signal(self, signum: int, grace: float) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        try:
            self.process.wait(timeout=grace or None)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self, all_runs: bool = False) -> str:
        """The current run's output, or every run's output in order."""
        if not all_runs:
            return (
                self.log_path.read_text(errors="replace")
                if self.log_path.exists()
                else ""
            )
        parts = [
            self.workdir / f"operator-{n}.log" for n in range(1, self.generation + 1)
        ]
        return "".join(p.read_text(errors="replace") for p in parts if p.exists())
