"""pytest fixtures over the harness; loaded by tests/conftest.py as a plugin.

Fixtures (scope):

* ``s3_server`` (session): moto's endpoint URL.
* ``s3`` (function): an `S3` with a boto3 `client`, a fresh `bucket`, the
  `endpoint` and the `env` a subprocess needs to reach it.
* ``faulty_s3`` (function): a `FaultyS3Proxy` in front of ``s3_server``.
* ``kube`` (function): a started `Kube` emulator.
* ``make_job_controller`` (function): a factory of started `JobController`s
  bound to ``kube``; ``job_controller`` is one with the defaults.
* ``operator`` (function): a factory starting `OperatorProcess`es.

Everything started is stopped at teardown, processes included.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import s3 as s3_support
from tests.support.faulty_s3 import FaultyS3Proxy
from tests.support.jobcontroller import JobController
from tests.support.kube import Kube
from tests.support.operator_proc import OperatorProcess
from tests.support.pods import rewrite_first

VENV_BIN = pathlib.Path(sys.executable).parent


@dataclasses.dataclass
class S3:
    client: Any
    bucket: str
    endpoint: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    with s3_support.moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_server: str) -> S3:
    client = s3_support.client(s3_server)
    bucket = s3_support.fresh_bucket(client)
    return S3(client, bucket, s3_server, s3_support.s3_env(s3_server))


@pytest.fixture
def faulty_s3(s3_server: str) -> Iterator[FaultyS3Proxy]:
    with FaultyS3Proxy(s3_server) as proxy:
        yield proxy


@pytest.fixture
def kube(tmp_path: pathlib.Path) -> Iterator[Kube]:
    workdir = tmp_path / "kube"
    workdir.mkdir()
    with Kube(workdir) as emulator:
        yield emulator


def default_pod_env() -> dict[str, str]:
    """The venv first on PATH, so pods find `kubegrid` and `python` there."""
    return {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def default_rewriter() -> Callable[[list[str]], list[str]]:
    """Container commands that name venv programs run the venv's copies."""
    python = sys.executable
    return rewrite_first(
        {"kubegrid": str(VENV_BIN / "kubegrid"), "python": python, "python3": python}
    )


@pytest.fixture
def make_job_controller(
    kube: Kube, tmp_path: pathlib.Path
) -> Iterator[Callable[..., JobController]]:
    started: list[JobController] = []

    def make(**kwargs: Any) -> JobController:
        kwargs.setdefault("extra_env", default_pod_env())
        kwargs.setdefault("command_rewriter", default_rewriter())
        kwargs.setdefault("workdir", tmp_path / f"jobs-{len(started)}")
        kwargs["workdir"].mkdir(parents=True, exist_ok=True)
        controller = JobController(kube, **kwargs).start()
        started.append(controller)
        return controller

    yield make
    for controller in started:
        controller.stop()
    # A harness that failed silently would make the test's verdict meaningless.
    errors = [error for controller in started for error in controller.errors]
    if errors:
        pytest.fail(f"the job controller harness failed: {errors!r}")


@pytest.fixture
def job_controller(make_job_controller: Callable[..., JobController]) -> JobController:
    return make_job_controller()


@pytest.fixture
def operator(
    kube: Kube, tmp_path: pathlib.Path
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(**kwargs: Any) -> OperatorProcess:
        workdir = tmp_path / f"operator-{len(started)}"
        workdir.mkdir(parents=True, exist_ok=True)
        process = OperatorProcess(kube, workdir, **kwargs)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill()
