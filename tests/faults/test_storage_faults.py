"""Object-store failures on write end a shard with the right exit code.

``kubegrid run-shard`` runs as a pod does, in a subprocess, with its output in
S3 behind the fault proxy. A permanent failure (the output bucket gone) is
the user's to fix: exit 2, never retried. A transient one that outlasts the
retries is worth another attempt of the pod: exit 75. Either way the
termination report tells the operator which, and stderr names the URI.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import yaml
from sklearn.datasets import load_iris

from tests.faults.helpers import start, wait_until

SHARD_ARGS = ("--index", "0", "--shards", "1", "--workers", "1")


def write_search(s3: Any, endpoint: str, output: str, folder: pathlib.Path) -> str:
    text = load_iris(as_frame=True).frame.to_csv(index=False)
    s3.client.put_object(Bucket=s3.bucket, Key="iris.csv", Body=text.encode())
    document = {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": "store-faults"},
        "spec": {
            "dataset": {"uri": f"s3://{s3.bucket}/iris.csv", "target": "target"},
            "estimator": {"class": "sklearn.svm.SVC"},
            "paramGrid": {"C": [0.1, 1.0]},
            "cv": 3,
            "output": {"uri": output},
            "storage": {"endpointUrl": endpoint},
        },
    }
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_output_bucket_deleted_mid_shard_is_a_user_error(
    s3: Any, faulty_s3: Any, tmp_path: pathlib.Path
) -> None:
    """The output bucket is deleted while the shard's first write is in
    flight: exit 2, stderr names the object's URI and NoSuchBucket, and the
    report says it is a user error."""
    bucket = f"{s3.bucket}-out"
    s3.client.create_bucket(Bucket=bucket)
    path = write_search(s3, faulty_s3.url, f"s3://{bucket}/run", tmp_path)
    report = tmp_path / "termination-log"
    # The proxy holds the first PUT of results (after the start-up probe
    # found the bucket writable) long enough for the test to delete the
    # (still empty) bucket under it.
    held = faulty_s3.inject(
        1, "delay", method="PUT", path=f"^/{bucket}/run/partials/", delay=3.0
    )
    log = tmp_path / "shard.log"

    pod = start(
        "run-shard", path, *SHARD_ARGS, "--report-to", str(report), env=s3.env, log=log
    )
    wait_until(pod, lambda: held.injected > 0, "its first write")
    s3.client.delete_bucket(Bucket=bucket)
    pod.wait(timeout=120)

    err = log.read_text()
    assert pod.returncode == 2, err
    assert f"s3://{bucket}/run/partials/" in err and "NoSuchBucket" in err
    assert "Traceback" not in err
    reported = json.loads(report.read_text())
    assert reported["kind"] == "user"
    assert f"s3://{bucket}/run/partials/" in reported["error"]


def test_write_failing_past_the_retries_is_an_infra_error(
    s3: Any, faulty_s3: Any, tmp_path: pathlib.Path
) -> None:
    """Every PUT answering 500: with AWS_MAX_ATTEMPTS=2 the shard makes
    exactly two attempts, then exits 75 naming the URI, and the report says
    the failure is the infrastructure's."""
    path = write_search(s3, faulty_s3.url, f"s3://{s3.bucket}/run", tmp_path)
    report = tmp_path / "termination-log"
    failing = faulty_s3.inject(1_000, "internal", method="PUT", path="/partials/")
    log = tmp_path / "shard.log"

    pod = start(
        "run-shard",
        path,
        *SHARD_ARGS,
        "--report-to",
        str(report),
        env=s3.env | {"AWS_MAX_ATTEMPTS": "2"},
        log=log,
    )
    pod.wait(timeout=300)

    err = log.read_text()
    assert pod.returncode == 75, err
    assert failing.injected == 2
    assert f"s3://{s3.bucket}/run/partials/" in err and "InternalError" in err
    assert "Traceback" not in err
    reported = json.loads(report.read_text())
    assert reported["kind"] == "infra"
    assert "InternalError" in reported["error"]
