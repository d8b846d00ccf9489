"""Data in and results out through a real S3 protocol server on loopback.

The code under test runs as the `kubegrid` command in a subprocess, exactly as
a pod would, with moto's server (or a fault-injecting proxy in front of it)
as its S3 endpoint.
"""

from __future__ import annotations

import io
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

KUBEGRID = str(Path(sys.executable).parent / "kubegrid")
GRID = {"C": [0.1, 1.0, 10.0], "gamma": [0.01, 0.1, 1.0]}


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
