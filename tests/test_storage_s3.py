"""Data in and results out through a real S3 protocol server on loopback.

The code under test runs as the `kubegrid` command in a subprocess, exactly as
a pod would, with moto's server (or a fault-injecting proxy in front of it)
as its S3 endpoint. Transient faults must be ridden out with results equal to
GridSearchCV's; permanent ones must end the run with exit 2, a message naming
the URI, and no retry loop.
"""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from kubegrid import results, storage
from kubegrid.errors import EXIT_OK, EXIT_USER_ERROR
from tests.support.faulty_s3 import FaultKind, FaultyS3Proxy, Logged

KUBEGRID = str(Path(sys.executable).parent / "kubegrid")
GRID = {"C": [0.1, 1.0, 10.0], "gamma": [0.01, 0.1, 1.0]}

# Path regexes (path-style requests: /bucket/key?query) for the proxy.
DATASET_GET = r"/data/iris\.csv$"
LIST = r"\?list-type=2"
PARTIAL_GET = r"/results/iris/partials/.*\.json$"
PARTIAL_PUT = r"/results/iris/partials/[0-9a-f]+/(chunks/)?shard-"


def put_iris(s3: Any) -> pd.DataFrame:
    frame = load_iris(as_frame=True).frame
    s3.client.put_object(
        Bucket=s3.bucket, Key="data/iris.csv", Body=frame.to_csv(index=False).encode()
    )
    return pd.read_csv(io.BytesIO(frame.to_csv(index=False).encode()))


def manifest(tmp_path: Path, bucket: str, endpoint: str, **spec: Any) -> Path:
    document = {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": "iris-s3"},
        "spec": {
            "dataset": {"uri": f"s3://{bucket}/data/iris.csv", "target": "target"},
            "estimator": {"class": "sklearn.svm.SVC"},
            "paramGrid": GRID,
            "cv": 5,
            "output": {"uri": f"s3://{bucket}/results/iris"},
            "storage": {"endpointUrl": endpoint},
        }
        | spec,
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def kubegrid(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBEGRID, *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_results(s3: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    store = storage.open_store(
        f"s3://{s3.bucket}/results/iris", storage.Location(s3.endpoint)
    )
    return results.read_cv_results(store)


def assert_equal_to_sklearn(table: dict[str, Any], X: Any, y: Any) -> None:
    expected = GridSearchCV(SVC(), GRID, cv=5).fit(X, y).cv_results_
    for key, value in expected.items():
        if key.endswith("_time"):
            continue
        if key == "params" or key.startswith("param_"):
            assert list(table[key]) == list(value), key
        else:
            assert np.array_equal(
                np.asarray(table[key]), np.asarray(value), equal_nan=True
            ), key


def test_run_reads_and_writes_s3_and_matches_sklearn(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local run with data and results in S3 gives GridSearchCV's cv_results_."""
    frame = put_iris(s3)
    path = manifest(tmp_path, s3.bucket, s3.endpoint)

    done = kubegrid("run", str(path), "--quiet", "--workers", "2", env=s3.env)

    assert done.returncode == EXIT_OK, done.stderr
    keys = {o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]}
    assert {"results/iris/summary.json", "results/iris/best_estimator.joblib"} <= keys
    assert_equal_to_sklearn(
        read_results(s3, monkeypatch), frame.drop(columns="target"), frame.target
    )


def assert_each_fault_was_retried(proxy: FaultyS3Proxy) -> None:
    """Every faulted request was sent again, and that later request was served."""
    faulted = [entry for entry in proxy.log if entry.fault is not None]
    assert faulted
    for entry in faulted:
        later = [
            e
            for e in proxy.log
            if e.path == entry.path and e.method == entry.method and e.at > entry.at
        ]
        assert any(e.fault is None for e in later), entry


def test_transient_store_errors_are_retried(
    s3: Any, faulty_s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throttling, 500s and reset connections on reads and writes are ridden out."""
    frame = put_iris(s3)
    path = manifest(tmp_path, s3.bucket, faulty_s3.url)
    faulty_s3.inject(2, "slowdown", method="GET")
    faulty_s3.inject(2, "internal", method="PUT")
    faulty_s3.inject(1, "reset", method="PUT")

    done = kubegrid("run", str(path), "--quiet", env=s3.env)

    assert done.returncode == EXIT_OK, done.stderr
    assert faulty_s3.injected == 5
    assert_equal_to_sklearn(
        read_results(s3, monkeypatch), frame.drop(columns="target"), frame.target
    )


@pytest.mark.parametrize("where", ["dataset", "output"])
def test_missing_bucket_fails_fast_naming_the_uri(
    s3: Any, tmp_path: Path, where: str
) -> None:
    """A bucket that does not exist is a user error naming the URI, not a retry loop."""
    put_iris(s3)
    path = manifest(tmp_path, s3.bucket, s3.endpoint)
    document = yaml.safe_load(path.read_text())
    if where == "dataset":
        document["spec"]["dataset"]["uri"] = "s3://no-such-bucket-kg/iris.csv"
    else:
        document["spec"]["output"]["uri"] = "s3://no-such-bucket-kg/out"
    path.write_text(yaml.safe_dump(document))

    done = kubegrid("run", str(path), "--quiet", env=s3.env)

    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert "s3://no-such-bucket-kg/" in done.stderr
    assert "NoSuchBucket" in done.stderr
    assert "Traceback" not in done.stderr
    # Both are found before any fit, and the message names the field to fix.
    assert f"spec.{where}" in done.stderr


def _child_client_is_its_own(uri: str, endpoint: str, inherited_id: int) -> bool:
    # Runs in a forked child: use the store as a worker would, and report
    # whether the client behind it is a new one.
    store = storage.open_store(uri, storage.Location(endpoint))
    store.write(f"from-child-{os.getpid()}", b"x" * 1000)
    return id(storage._client(storage.Location(endpoint))) != inherited_id


def test_forked_workers_do_not_share_the_parents_connections(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local run forks workers after the parent has talked to the store."""
    import multiprocessing

    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    uri = f"s3://{s3.bucket}/fork"
    store = storage.open_store(uri, storage.Location(s3.endpoint))
    store.write("from-parent", b"p")  # opens a pooled keep-alive connection
    parent = id(storage._client(storage.Location(s3.endpoint)))

    with multiprocessing.get_context("fork").Pool(2) as pool:
        own = pool.starmap(_child_client_is_its_own, [(uri, s3.endpoint, parent)] * 6)

    assert all(own)
    assert store.read("from-parent") == b"p"
    assert len(store.list("from-child-")) >= 1


@pytest.mark.parametrize("kind", ["internal", "reset", "cut", "garble"])
def test_transient_read_errors_are_retried(
    s3: Any,
    faulty_s3: FaultyS3Proxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: FaultKind,
) -> None:
    """500s, connections reset before the answer, bodies cut off midway and
    bodies that fail their checksum, on the dataset download, on listings and
    on reads of partial results: each is retried and the run gives
    GridSearchCV's cv_results_. (A listing carries no checksum, so a garbled
    one could not be told from a true one: that fault hits objects only.)"""
    frame = put_iris(s3)
    path = manifest(tmp_path, s3.bucket, faulty_s3.url)
    targets = (
        (DATASET_GET, PARTIAL_GET)
        if kind == "garble"
        else (DATASET_GET, LIST, PARTIAL_GET)
    )
    rules = [faulty_s3.inject(2, kind, method="GET", path=where) for where in targets]

    done = kubegrid("run", str(path), "--quiet", env=s3.env)

    assert done.returncode == EXIT_OK, done.stderr
    assert [rule.injected for rule in rules] == [2] * len(targets)
    assert_each_fault_was_retried(faulty_s3)
    assert "Traceback" not in done.stderr
    assert_equal_to_sklearn(
        read_results(s3, monkeypatch), frame.drop(columns="target"), frame.target
    )


def gaps(requests: list[Logged]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(requests)]


@pytest.mark.parametrize("kind", ["slowdown", "cut", "garble"])
def test_retries_of_a_read_are_spaced_out(
    s3: Any,
    faulty_s3: FaultyS3Proxy,
    monkeypatch: pytest.MonkeyPatch,
    kind: FaultKind,
) -> None:
    """Three throttled answers (or three bodies cut off, or garbled) in a row:
    the read is sent four times and succeeds, and the client waits between
    attempts."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    s3.client.put_object(Bucket=s3.bucket, Key="backoff/blob", Body=b"x" * 4096)
    faulty_s3.inject(3, kind, method="GET", path="/backoff/blob$")
    store = storage.open_store(
        f"s3://{s3.bucket}/backoff", storage.Location(faulty_s3.url)
    )

    assert store.read("blob") == b"x" * 4096

    attempts = faulty_s3.requests("/backoff/blob$", method="GET")
    assert [a.fault for a in attempts] == [kind, kind, kind, None]
    assert all(gap > 0 for gap in gaps(attempts))
    # A retry sent at once takes a few milliseconds on loopback. With backoff
    # the waits are uniform(0, 1 s), (0, 2 s), (0, 4 s) for throttling and
    # (0, 0.5 s), (0, 1 s), (0, 2 s) for a broken body: their sum stays under
    # 50 ms with a chance below 1e-4. A lower bound only: a loaded machine
    # makes the gaps longer, never shorter.
    assert sum(gaps(attempts)) > 0.05


@pytest.mark.parametrize(("kind", "count"), [("unavailable", 6), ("slowdown", 4)])
def test_a_brown_out_on_partial_writes_is_ridden_out(
    s3: Any,
    faulty_s3: FaultyS3Proxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: FaultKind,
    count: int,
) -> None:
    """Several 503s in a row on the writes of partial results (one worker, so
    they all hit one object): the write goes through and the run matches."""
    frame = put_iris(s3)
    path = manifest(tmp_path, s3.bucket, faulty_s3.url)
    rule = faulty_s3.inject(count, kind, method="PUT", path=PARTIAL_PUT)

    done = kubegrid("run", str(path), "--quiet", "--workers", "1", env=s3.env)

    assert done.returncode == EXIT_OK, done.stderr
    assert rule.injected == count
    puts = faulty_s3.requests(PARTIAL_PUT, method="PUT")
    first = puts[0].path
    assert [p.path for p in puts[: count + 1]] == [first] * (count + 1)
    assert [p.fault for p in puts[: count + 1]] == [kind] * count + [None]
    assert_equal_to_sklearn(
        read_results(s3, monkeypatch), frame.drop(columns="target"), frame.target
    )


@pytest.mark.parametrize("where", ["dataset", "output"])
def test_access_denied_fails_at_once_naming_the_uri(
    s3: Any, faulty_s3: FaultyS3Proxy, tmp_path: Path, where: str
) -> None:
    """A 403 AccessDenied on the dataset's GET or on the output's first PUT
    is a user error: exit 2, the URI and the denial named, one request only
    (a refusal is never retried), and no fit run."""
    put_iris(s3)
    path = manifest(tmp_path, s3.bucket, faulty_s3.url)
    if where == "dataset":
        uri, method, key = f"s3://{s3.bucket}/data/iris.csv", "GET", DATASET_GET
    else:
        uri, method, key = f"s3://{s3.bucket}/results/iris/", "PUT", "/results/iris/"
    rule = faulty_s3.inject(1_000, "denied", method=method, path=key)

    done = kubegrid("run", str(path), "--quiet", env=s3.env)

    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert uri in done.stderr
    assert "AccessDenied: Access Denied" in done.stderr
    assert f"spec.{where}.uri" in done.stderr
    assert "Traceback" not in done.stderr
    assert rule.injected == 1
    assert len(faulty_s3.requests(key, method=method)) == 1
    assert faulty_s3.requests(PARTIAL_PUT, method="PUT") == []


def test_misconfigured_storage_is_a_user_error(s3: Any, tmp_path: Path) -> None:
    """Settings that no retry can fix (an endpoint that is not a URL, a bucket
    name S3 refuses, a key id without its secret) end the run with exit 2
    and a message saying what is wrong, not exit 75 or a traceback."""
    put_iris(s3)
    cases = {
        "endpoint": ({"storage": {"endpointUrl": "not a url"}}, {}, "not a url"),
        "bucket": (
            {"dataset": {"uri": "s3://bad!bucket/iris.csv", "target": "target"}},
            {},
            'Invalid bucket name "bad!bucket"',
        ),
        "secret": ({}, {"AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY"),
    }
    for case, (spec, env, expected) in cases.items():
        path = manifest(tmp_path, s3.bucket, s3.endpoint, **spec)

        done = kubegrid("run", str(path), "--quiet", env=s3.env | env)

        assert done.returncode == EXIT_USER_ERROR, (case, done.stderr)
        assert expected in done.stderr, case
        assert "Traceback" not in done.stderr, case


def test_delete_many_removes_present_and_absent_keys_in_one_request(
    s3: Any, faulty_s3: FaultyS3Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys that exist go, keys that do not are no error, and the store is
    asked once (DeleteObjects), not once per key."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    store = storage.open_store(
        f"s3://{s3.bucket}/batch", storage.Location(faulty_s3.url)
    )
    for key in ("a", "b", "keep"):
        store.write(key, key.encode())

    store.delete_many(["a", "b", "never-written"])

    assert store.list("") == ["keep"]
    assert len(faulty_s3.requests(r"\?delete", method="POST")) == 1


def test_delete_many_refused_is_a_user_error_naming_the_uri(
    s3: Any, faulty_s3: FaultyS3Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    store = storage.open_store(
        f"s3://{s3.bucket}/batch", storage.Location(faulty_s3.url)
    )
    faulty_s3.inject(1, "denied", method="POST", path=r"\?delete")

    with pytest.raises(storage.StorageAccessError, match="AccessDenied") as caught:
        store.delete_many(["a"])

    assert f"s3://{s3.bucket}/batch/a" in str(caught.value)


def test_local_delete_many(tmp_path: Path) -> None:
    store = storage.open_store(str(tmp_path))
    store.write("a", b"1")
    store.write("keep", b"2")
    store.delete_many(["a", "missing"])
    assert store.list("") == ["keep"]


def test_a_prefetched_object_is_read_from_the_background_copy(
    s3: Any, faulty_s3: FaultyS3Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forked copier's file is what the read gets: one GET in all, the
    object's own name kept (parsers infer compression from it), removed after."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    frame = put_iris(s3)
    uri, where = f"s3://{s3.bucket}/data/iris.csv", storage.Location(faulty_s3.url)

    with storage.prefetching(uri, where):
        with storage.readable_path(uri, where) as path:
            assert path.name == "iris.csv"
            assert pd.read_csv(path).equals(frame)
        assert not path.exists()

    assert len(faulty_s3.requests(DATASET_GET, "GET")) == 1


def test_a_failed_prefetch_gives_the_read_its_error(
    s3: Any, faulty_s3: FaultyS3Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read raises the error the copier met, as it would have met it
    itself, without asking the store a second time."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    uri, where = f"s3://{s3.bucket}/data/absent.csv", storage.Location(faulty_s3.url)

    missing = r"absent\.csv: no such object"
    with (
        storage.prefetching(uri, where),
        pytest.raises(storage.StorageAccessError, match=missing),
        storage.readable_path(uri, where),
    ):
        pass

    assert len(faulty_s3.requests(r"/data/absent\.csv$", "GET")) == 1


def test_an_unused_prefetch_is_stopped_and_removed(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    put_iris(s3)
    uri, where = f"s3://{s3.bucket}/data/iris.csv", storage.Location(s3.endpoint)

    with storage.prefetching(uri, where):
        copy = storage._copies[(uri, where)]

    assert not copy.path.parent.exists()
    with pytest.raises(ChildProcessError):
        os.waitpid(copy.pid, 0)  # already reaped: no zombie left
    assert (uri, where) not in storage._copies


def test_local_results_get_the_umasks_mode_and_no_leftovers(tmp_path: Path) -> None:
    """Written files are readable as any new file would be (0666 less the
    umask); a failed write leaves no temporary file behind."""
    store = storage.open_store(str(tmp_path))
    previous = os.umask(0o022)
    try:
        store.write("out/summary.json", b"{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "out" / "summary.json").stat().st_mode & 0o777 == 0o644

    (tmp_path / "out" / "taken").mkdir()  # a directory where the file would go
    with pytest.raises(storage.StorageAccessError):
        store.write("out/taken", b"x")
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert names == ["summary.json", "taken"]
