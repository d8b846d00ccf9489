"""Tests of the test harness itself: emulator, Job controller, S3, operator process.

Each test pins one behaviour the kubegrid suites rely on, so a broken helper
fails here first and by name rather than as a mysterious end-to-end timeout.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import kubernetes
import pytest

from tests.support import manifests
from tests.support import s3 as s3_support
from tests.support.faulty_s3 import FaultyS3Proxy
from tests.support.fixtures import S3
from tests.support.jobcontroller import JOBS, PODS, JobController
from tests.support.jobstate import compress_indexes, parse_indexes
from tests.support.kube import GRIDSEARCH, Kube
from tests.support.operator_proc import OperatorProcess

NS = "default"
FAIL_ON_2 = (
    "import os,sys; sys.exit(1 if os.environ['JOB_COMPLETION_INDEX']=='2' else 0)"
)


def conditions(job: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (c["type"], c["status"], c["reason"])
        for c in job["status"].get("conditions", [])
    ]


def pods_of(kube: Kube, job: str) -> list[dict[str, Any]]:
    return [
        p
        for p in kube.list(PODS, NS)
        if p["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job
    ]


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["status"]["containerStatuses"][0]["state"].get("terminated") or {}


def fetch(kube: Kube, resource: str, name: str) -> dict[str, Any]:
    obj = kube.get(resource, NS, name)
    assert obj is not None, f"{resource} {name} does not exist"
    return obj


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


# -- Job semantics -----------------------------------------------------------


def test_index_compression_round_trips() -> None:
    assert compress_indexes([5, 0, 1, 2, 3]) == "0-3,5"
    assert compress_indexes([]) == ""
    assert parse_indexes("0-3,5") == {0, 1, 2, 3, 5}


def test_failing_index_is_retried_per_index_then_job_fails(
    kube: Kube, job_controller: JobController
) -> None:
    """backoffLimitPerIndex=1: index 2 runs twice; the others once; FailedIndexes."""
    body = manifests.python_job(
        "gs-fail", FAIL_ON_2, completions=4, parallelism=2, backoffLimitPerIndex=1
    )
    kube.client().create(JOBS, NS, body)
    job = job_controller.wait_finished(NS, "gs-fail")

    status = job["status"]
    assert status["failedIndexes"] == "2"
    assert status["completedIndexes"] == "0-1,3"
    assert status["succeeded"] == 3 and status["failed"] == 2
    assert conditions(job)[-2:] == [
        ("FailureTarget", "True", "FailedIndexes"),
        ("Failed", "True", "FailedIndexes"),
    ]
    assert "completionTime" not in status  # upstream sets it on success only
    assert job_controller.starts(NS, "gs-fail") == {0: 1, 1: 1, 2: 2, 3: 1}

    # Each attempt is a Pod with the Job's labels and a terminated state.
    failed_pods = [
        p
        for p in pods_of(kube, "gs-fail")
        if p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "2"
    ]
    assert len(failed_pods) == 2
    assert {terminated(p)["exitCode"] for p in failed_pods} == {1}
    assert {terminated(p)["reason"] for p in failed_pods} == {"Error"}
    assert (
        failed_pods[0]["metadata"]["ownerReferences"][0]["uid"]
        == job["metadata"]["uid"]
    )

    # The official client must be able to deserialise what the harness wrote.
    client = kube.api_client()
    read: Any = kubernetes.client.BatchV1Api(client).read_namespaced_job_status(
        "gs-fail", NS
    )
    assert read.status.failed_indexes == "2"
    assert [c.type for c in read.status.conditions][-1] == "Failed"
    pods: list[Any] = kubernetes.client.CoreV1Api(client).list_namespaced_pod(NS).items
    reasons = sorted(
        p.status.container_statuses[0].state.terminated.reason for p in pods
    )
    assert reasons == ["Completed"] * 3 + ["Error"] * 2


def test_succeeding_job_completes_with_logs_per_index(
    kube: Kube, job_controller: JobController
) -> None:
    code = "import os; print('hello from', os.environ['JOB_COMPLETION_INDEX'])"
    kube.client().create(JOBS, NS, manifests.python_job("ok", code, completions=3))
    job = job_controller.wait_finished(NS, "ok")

    assert [c[0] for c in conditions(job)] == ["SuccessCriteriaMet", "Complete"]
    assert job["status"]["completedIndexes"] == "0-2"
    assert job["status"]["succeeded"] == 3
    assert job["status"]["completionTime"]
    assert job_controller.logs(NS, "ok", 1).strip() == "hello from 1"
    assert {terminated(p)["reason"] for p in pods_of(kube, "ok")} == {"Completed"}


def test_fail_index_rule_skips_retries(
    kube: Kube, job_controller: JobController
) -> None:
    code = (
        "import os,sys; sys.exit(3 if os.environ['JOB_COMPLETION_INDEX']=='1' else 0)"
    )
    policy = {
        "rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}}
        ]
    }
    body = manifests.python_job(
        "fi", code, completions=3, backoffLimitPerIndex=3, podFailurePolicy=policy
    )
    kube.client().create(JOBS, NS, body)
    job = job_controller.wait_finished(NS, "fi")

    assert job["status"]["failedIndexes"] == "1"
    assert job_controller.starts(NS, "fi")[1] == 1


def test_max_failed_indexes_fails_the_job_early(
    kube: Kube, job_controller: JobController
) -> None:
    body = manifests.python_job(
        "mfi",
        "raise SystemExit(1)",
        completions=4,
        parallelism=1,
        backoffLimitPerIndex=0,
        maxFailedIndexes=0,
    )
    kube.client().create(JOBS, NS, body)
    job = job_controller.wait_finished(NS, "mfi")

    assert conditions(job)[-1] == ("Failed", "True", "MaxFailedIndexesExceeded")
    assert job_controller.starts(NS, "mfi") == {0: 1}


def test_ignore_rule_reruns_without_counting(
    kube: Kube, job_controller: JobController, tmp_path: pathlib.Path
) -> None:
    """Exit 5 is ignored: attempt 1 fails, attempt 2 succeeds, `failed` stays 0."""
    marker = tmp_path / "ran-once"
    code = (
        f"import pathlib,sys; m=pathlib.Path({str(marker)!r}); "
        "first=not m.exists(); m.touch(); sys.exit(5 if first else 0)"
    )
    policy = {"rules": [{"action": "Ignore", "onExitCodes": {"values": [5]}}]}
    body = manifests.python_job("ig", code, backoffLimit=0, podFailurePolicy=policy)
    kube.client().create(JOBS, NS, body)
    job = job_controller.wait_finished(NS, "ig")

    assert conditions(job)[-1][0] == "Complete"
    assert "failed" not in job["status"]
    assert job_controller.starts(NS, "ig") == {0: 2}


def test_non_indexed_job_fails_after_backoff_limit(
    kube: Kube, job_controller: JobController
) -> None:
    body = manifests.python_job(
        "ni", "raise SystemExit(1)", indexed=False, backoffLimit=1
    )
    kube.client().create(JOBS, NS, body)
    job = job_controller.wait_finished(NS, "ni")

    assert conditions(job)[-1] == ("Failed", "True", "BackoffLimitExceeded")
    assert job["status"]["failed"] == 2
    assert "completedIndexes" not in job["status"]
    assert sum(job_controller.starts(NS, "ni").values()) == 2


def test_active_deadline_kills_and_fails(
    kube: Kube, job_controller: JobController
) -> None:
    body = manifests.python_job(
        "slow", "import time; time.sleep(60)", activeDeadlineSeconds=1
    )
    kube.client().create(JOBS, NS, body)
    started = time.monotonic()
    job = job_controller.wait_finished(NS, "slow", timeout=10)

    assert time.monotonic() - started < 5
    assert conditions(job)[-1] == ("Failed", "True", "DeadlineExceeded")
    assert not job_controller.runs[job["metadata"]["uid"]].active


def test_sigkill_is_reported_as_oomkilled(
    kube: Kube, job_controller: JobController
) -> None:
    code = "import os,signal; os.kill(os.getpid(), signal.SIGKILL)"
    body = manifests.python_job("oom", code, backoffLimitPerIndex=0)
    kube.client().create(JOBS, NS, body)
    job = job_controller.wait_finished(NS, "oom")

    assert job["status"]["failedIndexes"] == "0"
    (pod,) = pods_of(kube, "oom")
    assert terminated(pod)["reason"] == "OOMKilled"
    assert terminated(pod)["exitCode"] == 137


def test_suspend_kills_without_failing_and_resume_reruns_unfinished(
    kube: Kube, job_controller: JobController, tmp_path: pathlib.Path
) -> None:
    gate = tmp_path / "gate"
    code = (
        f"import os,pathlib,time; g=pathlib.Path({str(gate)!r})\n"
        "while os.environ['JOB_COMPLETION_INDEX']=='1' and not g.exists():\n"
        "    time.sleep(0.02)"
    )
    api = kube.client()
    api.create(JOBS, NS, manifests.python_job("sus", code, completions=2))
    kube.wait_for(
        JOBS, NS, "sus", lambda j: j.get("status", {}).get("completedIndexes") == "0"
    )

    api.patch(JOBS, NS, "sus", {"spec": {"suspend": True}})
    job = kube.wait_for(JOBS, NS, "sus", lambda j: "active" not in j["status"])
    assert ("Suspended", "True", "JobSuspended") in conditions(job)
    assert "failed" not in job["status"] and "startTime" not in job["status"]

    gate.touch()
    api.patch(JOBS, NS, "sus", {"spec": {"suspend": False}})
    job = job_controller.wait_finished(NS, "sus")
    assert ("Suspended", "False", "JobResumed") in conditions(job)
    assert conditions(job)[-1][0] == "Complete"
    assert job_controller.starts(NS, "sus") == {0: 1, 1: 2}


# -- pods: environment and volumes ---------------------------------------------


def test_env_from_secret_configmap_fieldref_and_configmap_volume(
    kube: Kube, job_controller: JobController
) -> None:
    api = kube.client()
    api.create("v1/secrets", NS, manifests.secret("creds", {"token": "s3cr3t"}))
    api.create(
        "v1/configmaps", NS, manifests.config_map("spec", {"spec.yaml": "folds: 3\n"})
    )
    env = [
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
        },
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "SPEC", "value": "/etc/kubegrid/spec.yaml"},
    ]
    code = (
        "import os,sys; print(os.environ['TOKEN'], os.environ['POD']); "
        "print(open(sys.argv[1]).read() == open(os.environ['SPEC']).read())"
    )
    container = {
        "env": env,
        "args": ["/etc/kubegrid/spec.yaml"],
        "volumeMounts": [{"name": "spec", "mountPath": "/etc/kubegrid"}],
    }
    volumes = [{"name": "spec", "configMap": {"name": "spec"}}]
    body = manifests.python_job(
        "envs", code, container=container, pod_spec={"volumes": volumes}
    )
    api.create(JOBS, NS, body)
    job = job_controller.wait_finished(NS, "envs")

    assert conditions(job)[-1][0] == "Complete", job_controller.logs(NS, "envs")
    token, pod_name, same = job_controller.logs(NS, "envs").split()
    assert token == "s3cr3t"
    assert pod_name.startswith("envs-0-")
    assert same == "True"


# -- the emulator and the garbage collector --------------------------------------


def test_gc_deletes_children_of_a_deleted_owner(
    kube: Kube, job_controller: JobController
) -> None:
    api = kube.client()
    owner = api.create(
        "kubegrid.io/v1alpha1/gridsearches", NS, manifests.grid_search("gs")
    )
    api.create(
        "v1/configmaps",
        NS,
        manifests.owned_by(manifests.config_map("gs-spec", {"a": "b"}), owner),
    )
    api.create(
        JOBS,
        NS,
        manifests.owned_by(
            manifests.python_job("gs-w", "import time; time.sleep(60)"), owner
        ),
    )
    wait_until(lambda: bool(pods_of(kube, "gs-w")))
    (run,) = job_controller.runs.values()
    process = run.active[0].process

    api.delete("kubegrid.io/v1alpha1/gridsearches", NS, "gs")
    wait_until(lambda: kube.get(JOBS, NS, "gs-w") is None and not pods_of(kube, "gs-w"))
    assert kube.get("v1/configmaps", NS, "gs-spec") is None
    wait_until(lambda: process.poll() is not None)


def test_generation_moves_on_spec_changes_only(kube: Kube) -> None:
    api = kubernetes.client.CustomObjectsApi(kube.api_client())
    args = ("kubegrid.io", "v1alpha1", NS, "gridsearches")
    # 201 on create is what makes the client return the body at all.
    created = api.create_namespaced_custom_object(
        *args, manifests.grid_search("g", {"a": 1})
    )
    assert isinstance(created, dict)
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]

    api.patch_namespaced_custom_object(*args, "g", {"metadata": {"labels": {"x": "y"}}})
    api.patch_namespaced_custom_object_status(
        *args, "g", {"status": {"phase": "Running"}}
    )
    assert fetch(kube, GRIDSEARCH, "g")["metadata"]["generation"] == 1

    api.patch_namespaced_custom_object(*args, "g", {"spec": {"a": 2}})
    assert fetch(kube, GRIDSEARCH, "g")["metadata"]["generation"] == 2


def test_status_subresource_is_isolated(kube: Kube) -> None:
    api = kube.client()
    api.create(GRIDSEARCH, NS, manifests.grid_search("iso", {"a": 1}))
    api.patch(GRIDSEARCH, NS, "iso", {"status": {"phase": "Sneaky"}})
    api.patch(
        GRIDSEARCH, NS, "iso", {"spec": {"a": 99}, "status": {"phase": "Ok"}}, "status"
    )
    obj = fetch(kube, GRIDSEARCH, "iso")
    assert obj["spec"] == {"a": 1}
    assert obj["status"] == {"phase": "Ok"}


def test_request_log_counts_only_code_under_test(kube: Kube) -> None:
    kube.client().create(GRIDSEARCH, NS, manifests.grid_search("c"))  # harness traffic
    since = kube.mark()
    api = kubernetes.client.CustomObjectsApi(kube.api_client())
    api.get_namespaced_custom_object("kubegrid.io", "v1alpha1", NS, "gridsearches", "c")
    api.patch_namespaced_custom_object_status(
        "kubegrid.io", "v1alpha1", NS, "gridsearches", "c", {"status": {"n": 1}}
    )

    assert kube.count(since=since, name="c") == 2
    assert kube.count(since=since, method="PATCH", subresource="status") == 1
    assert kube.count(name="c", include_harness=True) == 3


# -- S3 ------------------------------------------------------------------------


def test_s3_round_trip_through_moto(s3: S3) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key="a/b.txt", Body=b"payload")
    body = s3.client.get_object(Bucket=s3.bucket, Key="a/b.txt")["Body"].read()
    assert body == b"payload"
    assert s3.env["AWS_ENDPOINT_URL"] == s3.endpoint


def test_faulty_proxy_503s_are_absorbed_by_standard_retries(
    s3: S3, faulty_s3: FaultyS3Proxy
) -> None:
    client = s3_support.client(faulty_s3.url, total_attempts=5)
    faulty_s3.inject(2, "slowdown")
    client.put_object(Bucket=s3.bucket, Key="k", Body=b"v")

    assert faulty_s3.injected == 2
    assert [entry.fault for entry in faulty_s3.log] == ["slowdown", "slowdown", None]
    assert s3.client.get_object(Bucket=s3.bucket, Key="k")["Body"].read() == b"v"


def test_faulty_proxy_errors_surface_without_retries(
    s3: S3, faulty_s3: FaultyS3Proxy
) -> None:
    client = s3_support.client(faulty_s3.url, total_attempts=1)
    faulty_s3.inject(1, "slowdown", method="GET", path=rf"^/{s3.bucket}/x$")
    s3.client.put_object(Bucket=s3.bucket, Key="x", Body=b"1")
    with pytest.raises(botocore.exceptions.ClientError) as error:
        client.get_object(Bucket=s3.bucket, Key="x")
    assert error.value.response["Error"]["Code"] == "SlowDown"

    faulty_s3.inject(1, "reset")
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.head_object(Bucket=s3.bucket, Key="x")
    assert client.head_object(Bucket=s3.bucket, Key="x")["ContentLength"] == 1


# -- the operator subprocess ---------------------------------------------------------


def test_operator_process_starts_kills_and_restarts(
    kube: Kube, operator: Callable[..., OperatorProcess]
) -> None:
    demo = pathlib.Path(__file__).parent / "support" / "demo_operator.py"
    proc = operator(module=None, paths=[str(demo)])
    api = kube.client()
    api.create(GRIDSEARCH, NS, manifests.grid_search("first"))
    kube.wait_for(GRIDSEARCH, NS, "first", lambda o: "seenBy" in o.get("status", {}))

    proc.kill()
    assert not proc.running
    proc.restart()
    api.create(GRIDSEARCH, NS, manifests.grid_search("second"))
    kube.wait_for(GRIDSEARCH, NS, "second", lambda o: "seenBy" in o.get("status", {}))
    assert proc.generation == 2
    assert "mark_seen" in proc.log(all_runs=True)

    # kopf's finalizer (a JSON patch guarded by resourceVersion) must let go.
    assert fetch(kube, GRIDSEARCH, "second")["metadata"].get("finalizers")
    api.delete(GRIDSEARCH, NS, "second")
    wait_until(lambda: kube.get(GRIDSEARCH, NS, "second") is None)
    assert "demo-operator released second" in proc.log()
