"""The real operator over real HTTP: GridSearch → Jobs → local pods → status.

Each test starts the kmock emulator (`kube`), the kopf operator as a
subprocess (`operator`), the Job-controller harness that runs every pod as a
local `kubegrid` process (`job_controller`) and moto for S3 (`s3`). Every
GridSearch applied here is first checked against the CRD's own schema.
"""

from __future__ import annotations

import io
import json
import pathlib
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import sklearn.datasets
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from tests.operator.conftest import digits_spec
from tests.support import gridsearches, manifests
from tests.support.fixtures import S3, default_pod_env
from tests.support.jobcontroller import JOBS, PODS, JobController
from tests.support.kube import GRIDSEARCH, Kube
from tests.support.operator_proc import OperatorProcess

NS = "default"
CONFIGMAPS = "v1/configmaps"
SECRET = "s3-creds"
# moto accepts any credentials, so these can be unique enough to search for.
ACCESS_KEY = f"AKIA{uuid.uuid4().hex[:16].upper()}"
SECRET_KEY = f"kubegrid-secret-{uuid.uuid4().hex}"

# A digits search takes ~20 s of fits on two cores; the rest is start-up.
RUN_TIMEOUT = 240.0


def apply(kube: Kube, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Create a GridSearch after checking it against the CRD's schema."""
    return gridsearches.create(kube, name, spec, NS)


def patch_search(kube: Kube, name: str, body: dict[str, Any]) -> None:
    """A merge patch of the GridSearch, as `kubectl patch --type merge` sends."""
    client = kube.client()
    try:
        client.patch(GRIDSEARCH, NS, name, body)
    finally:
        client.close()


def digits_csv() -> bytes:
    frame = sklearn.datasets.load_digits(as_frame=True).frame
    return frame.to_csv(index=False).encode()


def s3_search(s3: S3, name: str, **changes: Any) -> dict[str, Any]:
    """examples/digits-svc.yaml pointed at moto, credentials from a Secret."""
    spec = digits_spec()
    spec["dataset"]["uri"] = f"s3://{s3.bucket}/digits.csv"
    spec["output"]["uri"] = f"s3://{s3.bucket}/results/{name}"
    spec["storage"] = {
        "endpointUrl": s3.endpoint,
        "region": "us-east-1",
        "secretRef": {"name": SECRET},
    }
    # Two pods at a time on this two-core machine; few shards, few start-ups.
    spec["parallelism"] = 2
    spec["sharding"] = {"shards": 4}
    spec.update(changes)
    return spec


def iris_search(s3: S3, name: str, **changes: Any) -> dict[str, Any]:
    """A search small enough that its pods take seconds: the fault tests' input."""
    spec = s3_search(s3, name)
    spec["dataset"]["uri"] = f"s3://{s3.bucket}/iris.csv"
    # Seeded, so that ties between splits break as in the reference search.
    spec["estimator"] = {
        "class": "sklearn.tree.DecisionTreeClassifier",
        "params": {"random_state": 0},
    }
    spec["paramGrid"] = {"max_depth": [1, 2, 3]}
    spec["cv"] = 3
    spec["sharding"] = {"shards": 3}
    spec.update(changes)
    return spec


def seed(kube: Kube, s3: S3) -> None:
    """Data in moto and the credentials Secret the pods read."""
    s3.client.put_object(Bucket=s3.bucket, Key="digits.csv", Body=digits_csv())
    iris = sklearn.datasets.load_iris(as_frame=True).frame
    iris_csv = iris.to_csv(index=False).encode()
    s3.client.put_object(Bucket=s3.bucket, Key="iris.csv", Body=iris_csv)
    secret = manifests.secret(
        SECRET,
        {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        },
        NS,
    )
    client = kube.client()
    try:
        client.create("v1/secrets", NS, secret)
    finally:
        client.close()


def phase_in(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (obj.get("status") or {}).get("phase") in phases


def wait_phase(
    kube: Kube, name: str, *phases: str, timeout: float = RUN_TIMEOUT
) -> dict[str, Any]:
    found = kube.wait_for(GRIDSEARCH, NS, name, phase_in(*phases), timeout=timeout)
    return found


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), None)


def sklearn_best(spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """What GridSearchCV finds on the same CSV: the reference result."""
    frame = pd.read_csv(io.BytesIO(digits_csv()))
    y = frame.pop("target")
    search = GridSearchCV(
        SVC(kernel="rbf"), spec["paramGrid"], cv=5, scoring="accuracy", n_jobs=2
    )
    search.fit(frame, y)
    return search.best_params_, float(search.best_score_)


def iris_reference(spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """What GridSearchCV finds for an `iris_search` spec: the reference result."""
    frame = sklearn.datasets.load_iris(as_frame=True).frame
    y = frame.pop("target")
    estimator = DecisionTreeClassifier(**spec["estimator"].get("params", {}))
    search = GridSearchCV(
        estimator, spec["paramGrid"], cv=spec["cv"], scoring="accuracy"
    )
    search.fit(frame, y)
    return search.best_params_, float(search.best_score_)


def jobs_created(kube: Kube) -> list[str]:
    """Names of the Jobs the code under test created, one per 201 answer."""
    records = kube.requests(action="create", plural="jobs", status=201)
    return sorted(str(record.name) for record in records)


@pytest.fixture
def running(
    kube: Kube,
    s3: S3,
    job_controller: JobController,
    operator: Callable[..., OperatorProcess],
) -> OperatorProcess:
    """Everything started: emulator, S3 with data and Secret, harness, operator."""
    seed(kube, s3)
    return operator()


def test_digits_search_succeeds_with_gridsearchcvs_answer(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """examples/digits-svc.yaml end to end equals scikit-learn's GridSearchCV."""
    spec = s3_search(s3, "digits")
    apply(kube, "digits", spec)

    done = wait_phase(kube, "digits", "Succeeded", "Failed")
    status = done["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    best_params, best_score = sklearn_best(spec)
    assert status["bestParams"] == best_params
    assert status["bestScore"] == pytest.approx(best_score, abs=1e-12)
    assert status["resultsUri"].startswith(f"s3://{s3.bucket}/results/digits/")
    assert status["tasks"] == {"total": 100, "done": 100}
    assert status["progress"] == "100/100"
    assert condition(done, "Complete")["status"] == "True"  # type: ignore[index]
    assert len(json.dumps(status)) < 8 * 1024

    # The children: one ConfigMap, one shard Job and one reducer, all owned.
    uid = done["metadata"]["uid"]
    for resource, name in (
        (CONFIGMAPS, "digits-spec"),
        (JOBS, "digits-shards"),
        (JOBS, "digits-reduce"),
    ):
        child = kube.get(resource, NS, name)
        assert child is not None, name
        owners = child["metadata"]["ownerReferences"]
        assert [o["uid"] for o in owners] == [uid]
    shards = kube.get(JOBS, NS, "digits-shards")
    assert shards is not None
    assert shards["spec"]["completions"] == 4
    assert shards["spec"]["completionMode"] == "Indexed"


def test_bad_spec_fails_with_the_field_named_and_no_job(
    kube: Kube, s3: S3, running: OperatorProcess
) -> None:
    spec = s3_search(s3, "typo", scoring="acuracy")
    apply(kube, "typo", spec)

    failed = wait_phase(kube, "typo", "Failed", timeout=30)
    assert failed["status"]["message"].startswith("spec.scoring: unknown scorer")
    reason = condition(failed, "Failed")
    assert reason is not None
    assert (reason["status"], reason["reason"]) == ("True", "InvalidSpec")
    assert kube.list(JOBS, NS) == []
    assert kube.get(CONFIGMAPS, NS, "typo-spec") is None


def events(kube: Kube, name: str) -> list[str]:
    """Reasons of the Events posted about one GridSearch, oldest first."""
    return [
        event["reason"]
        for event in kube.list("v1/events", NS)
        if event.get("involvedObject", {}).get("name") == name
    ]


def test_milestones_are_posted_as_events(
    kube: Kube, s3: S3, running: OperatorProcess
) -> None:
    mark = kube.mark()
    apply(kube, "noted", iris_search(s3, "noted"))
    wait_phase(kube, "noted", "Succeeded")

    # The operator's calls grow with the Job's status changes, a few per
    # shard: never with the grid, never a poll loop (watches excluded).
    calls = [r for r in kube.requests(since=mark) if r.action != "watch"]
    assert len(calls) <= 20 + 8 * 3, sorted({(r.method, r.path) for r in calls})
    kube.wait_for(
        GRIDSEARCH, NS, "noted", lambda _: "ResultsReady" in events(kube, "noted")
    )
    assert events(kube, "noted") == ["JobCreated", "ShardsDone", "ResultsReady"]


def test_a_user_error_fails_each_index_once_and_names_the_shards(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """Exit code 2 fails the index without a retry; the message says why."""
    spec = iris_search(s3, "nocol")
    spec["dataset"]["target"] = "label"  # iris has no such column
    spec["job"] = {"backoffLimitPerIndex": 3, "maxFailedIndexes": 3}
    apply(kube, "nocol", spec)

    failed = wait_phase(kube, "nocol", "Failed", "Succeeded")
    message = failed["status"]["message"]
    assert failed["status"]["phase"] == "Failed"
    assert "shard 0 failed: user error:" in message
    assert "'label'" in message
    assert set(job_controller.starts(NS, "nocol-shards").values()) == {1}
    assert kube.get(JOBS, NS, "nocol-reduce") is None


def test_an_oom_killed_shard_fails_the_search_and_says_which_limit(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    spec = iris_search(s3, "oom", parallelism=3)
    spec["resources"] = {"limits": {"memory": "256Mi"}}
    spec["job"] = {"backoffLimitPerIndex": 0}
    apply(kube, "oom", spec)

    _wait_until(lambda: job_controller.oom_kill(NS, "oom-shards", 1))
    failed = wait_phase(kube, "oom", "Failed", "Succeeded")
    message = failed["status"]["message"]
    assert failed["status"]["phase"] == "Failed"
    assert message.startswith("shard 1 failed: ran out of memory (OOMKilled)")
    assert "raise spec.resources.limits.memory (now 256Mi)" in message


def test_a_transient_failure_is_retried_and_the_search_succeeds(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    apply(kube, "flaky", iris_search(s3, "flaky", parallelism=3))

    _wait_until(lambda: job_controller.oom_kill(NS, "flaky-shards", 2))
    done = wait_phase(kube, "flaky", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert job_controller.starts(NS, "flaky-shards")[2] == 2
    assert done["status"]["bestParams"]["max_depth"] in (1, 2, 3)


@pytest.mark.parametrize(
    ("during", "job", "after"),
    [("Running", "again-shards", 1), ("Reducing", "again-reduce", 0)],
)
def test_a_restarted_operator_neither_duplicates_jobs_nor_loses_the_run(
    kube: Kube,
    s3: S3,
    running: OperatorProcess,
    job_controller: JobController,
    during: str,
    job: str,
    after: int,
) -> None:
    """Killed while shards (or the reducer) run: after a restart it completes.

    The Job's later attempts are frozen as they start, so the operator dies
    at a known point: shard 0 running and the others waiting (or the reducer
    started and not finished), never after the stage is over.
    """
    job_controller.hold(NS, job, after=after)
    spec = iris_search(s3, "again", parallelism=1)
    apply(kube, "again", spec)
    wait_phase(kube, "again", during)
    _wait_until(lambda: sum(job_controller.starts(NS, job).values()) > after)
    running.restart()
    job_controller.release(NS, job)

    done = wait_phase(kube, "again", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert jobs_created(kube) == ["again-reduce", "again-shards"]
    assert set(job_controller.starts(NS, "again-shards").values()) == {1}
    assert job_controller.starts(NS, "again-reduce") == {0: 1}
    best_params, best_score = iris_reference(spec)
    assert done["status"]["bestParams"] == best_params
    assert done["status"]["bestScore"] == pytest.approx(best_score, abs=1e-12)


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}, "spec.resources.requests"),
        ({"limits": {"gpu": "1"}}, "spec.resources.limits[gpu]"),
    ],
)
def test_a_job_the_api_server_refuses_fails_the_search_naming_the_field(
    kube: Kube,
    s3: S3,
    running: OperatorProcess,
    resources: dict[str, Any],
    field: str,
) -> None:
    """Values only the API server checks: the refusal ends the search Failed,
    naming the spec's field and the server's words, after one attempt."""
    apply(kube, "refused", iris_search(s3, "refused", resources=resources))

    failed = wait_phase(kube, "refused", "Failed", "Succeeded", timeout=60)
    status = failed["status"]
    assert status["phase"] == "Failed"
    assert status["message"].startswith(f"{field}: Invalid value")
    assert "the API server refused Job refused-shards: Invalid" in status["message"]
    assert condition(failed, "Failed")["reason"] == "InvalidSpec"  # type: ignore[index]
    # Refused once, never retried, and nothing created.
    time.sleep(2)
    assert len(kube.requests(action="create", plural="jobs")) == 1
    assert jobs_created(kube) == []
    assert "Traceback" not in running.log()


def test_a_search_created_suspended_starts_nothing_until_resumed(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    apply(kube, "paused", iris_search(s3, "paused", suspend=True))

    def suspended(obj: dict[str, Any]) -> bool:
        found = condition(obj, "Suspended")
        return found is not None and found["status"] == "True"

    paused = kube.wait_for(GRIDSEARCH, NS, "paused", suspended, timeout=60)
    assert paused["status"]["phase"] == "Pending"
    assert job_controller.starts(NS, "paused-shards") == {}

    patch_search(kube, "paused", {"spec": {"suspend": False}})
    done = wait_phase(kube, "paused", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert condition(done, "Suspended")["status"] == "False"  # type: ignore[index]
    assert set(job_controller.starts(NS, "paused-shards").values()) == {1}


def chunk_keys(s3: S3, name: str, shard: int) -> list[str]:
    """The checkpoint files shard `shard` of a search has written so far."""
    prefix = f"results/{name}/partials/"
    listing = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    keys = [item["Key"] for item in listing.get("Contents") or []]
    return [k for k in keys if f"/chunks/shard-{shard:05d}/" in k]


def shard_done(s3: S3, name: str, shard: int) -> bool:
    """Whether shard `shard` published its finished partial file."""
    prefix = f"results/{name}/partials/"
    listing = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    keys = [item["Key"] for item in listing.get("Contents") or []]
    return any(k.endswith(f"/shard-{shard:05d}.json") for k in keys)


def suspended_as(reason: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate: the search's Suspended condition is True for `reason`."""

    def check(obj: dict[str, Any]) -> bool:
        found = condition(obj, "Suspended")
        return found is not None and (found["status"], found["reason"]) == (
            "True",
            reason,
        )

    return check


def test_suspending_a_running_search_keeps_the_work_already_done(
    kube: Kube,
    s3: S3,
    make_job_controller: Callable[..., JobController],
    operator: Callable[..., OperatorProcess],
) -> None:
    """Suspended after shard 0 finished and shard 1 checkpointed: nothing is redone.

    The pods checkpoint after every fit. Shard 1 is frozen as soon as its
    first checkpoint is in storage, so the suspend provably lands mid-shard.
    """
    seed(kube, s3)
    env = {**default_pod_env(), "KUBEGRID_CHECKPOINT_SECONDS": "0"}
    job_controller = make_job_controller(extra_env=env)
    operator()
    spec = s3_search(s3, "pausing", parallelism=1, sharding={"shards": 3})
    apply(kube, "pausing", spec)

    _wait_until(lambda: bool(chunk_keys(s3, "pausing", 1)), timeout=RUN_TIMEOUT)
    assert job_controller.freeze(NS, "pausing-shards", 1)
    assert shard_done(s3, "pausing", 0)
    assert not shard_done(s3, "pausing", 1)

    patch_search(kube, "pausing", {"spec": {"suspend": True}})
    paused = kube.wait_for(GRIDSEARCH, NS, "pausing", suspended_as("Suspended"), 60)
    status = paused["status"]
    assert status["phase"] == "Pending"
    assert "finished work is kept" in status["message"]
    assert condition(paused, "Running")["status"] == "False"  # type: ignore[index]
    assert status["shards"]["succeeded"] == 1
    assert 0 < status["tasks"]["done"] < status["tasks"]["total"]
    job = kube.wait_for(JOBS, NS, "pausing-shards", job_suspended, timeout=30)
    assert job["spec"]["suspend"] is True

    patch_search(kube, "pausing", {"spec": {"suspend": False}})
    done = wait_phase(kube, "pausing", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert condition(done, "Suspended")["status"] == "False"  # type: ignore[index]

    # Shard 0 ran once; shard 1 ran again only for what it had not checkpointed.
    assert job_controller.starts(NS, "pausing-shards") == {0: 1, 1: 2, 2: 1}
    resumed = job_controller.logs(NS, "pausing-shards", index=1)
    match = re.search(r"shard 1: (\d+) tasks to run, (\d+) already done", resumed)
    assert match is not None, resumed[-2000:]
    assert int(match.group(2)) >= 1
    best_params, best_score = sklearn_best(spec)
    assert done["status"]["bestParams"] == best_params
    assert done["status"]["bestScore"] == pytest.approx(best_score, abs=1e-12)


def job_suspended(job: dict[str, Any]) -> bool:
    """The Job controller reports the Job suspended, as upstream does."""
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Suspended" and c["status"] == "True" for c in conditions)


def test_resuming_a_queued_search_leaves_its_job_to_kueue(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """spec.suspend false never unsuspends a Job that waits for its Kueue queue."""
    apply(kube, "queued", iris_search(s3, "queued", queueName="team"))
    kube.wait_for(GRIDSEARCH, NS, "queued", suspended_as("Queued"), timeout=60)

    # The user's suspend is the user's; its resume hands the Job back to Kueue.
    patch_search(kube, "queued", {"spec": {"suspend": True}})
    kube.wait_for(GRIDSEARCH, NS, "queued", suspended_as("Suspended"), timeout=60)
    patch_search(kube, "queued", {"spec": {"suspend": False}})
    kube.wait_for(GRIDSEARCH, NS, "queued", suspended_as("Queued"), timeout=60)

    versions = kube.history(JOBS, NS, "queued-shards")
    assert versions and all(v is None or v["spec"]["suspend"] for v in versions)
    assert job_controller.starts(NS, "queued-shards") == {}


def test_reapplying_the_same_manifest_changes_nothing(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """A GitOps sync of an unchanged manifest starts nothing and rewrites nothing."""
    spec = iris_search(s3, "synced")
    apply(kube, "synced", spec)
    done = wait_phase(kube, "synced", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    # ResultsReady is the operator's last act on a search.
    _wait_until(lambda: "ResultsReady" in events(kube, "synced"))
    before = kube.get(GRIDSEARCH, NS, "synced")
    assert before is not None
    jobs_before = {
        j["metadata"]["name"]: j["metadata"]["resourceVersion"]
        for j in kube.list(JOBS, NS)
    }

    # The whole manifest again, as `kubectl apply --server-side` sends it.
    mark, noops = kube.mark(), _noops(running, "synced")
    patch_search(kube, "synced", manifests.grid_search("synced", spec, NS))
    _wait_until(lambda: _noops(running, "synced") > noops, timeout=30)
    time.sleep(2)  # a moment for anything that event could have set off

    after = kube.get(GRIDSEARCH, NS, "synced")
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"] == before["status"]
    assert after["status"]["bestParams"] == done["status"]["bestParams"]
    jobs_after = {
        j["metadata"]["name"]: j["metadata"]["resourceVersion"]
        for j in kube.list(JOBS, NS)
    }
    assert jobs_after == jobs_before
    assert [r for r in kube.requests(since=mark) if r.method in ("POST", "PATCH")] == []
    assert jobs_created(kube) == ["synced-reduce", "synced-shards"]


def _noops(process: OperatorProcess, name: str) -> int:
    """How often kopf has seen the search change in nothing it handles."""
    line = f"[{NS}/{name}] Something has changed, but we are not interested"
    return process.log().count(line)


def test_deleting_a_search_removes_its_children(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """No finalizer to wait for: the owner references do the rest."""
    apply(kube, "gone", iris_search(s3, "gone"))
    wait_phase(kube, "gone", "Running", "Reducing", "Succeeded")
    client = kube.client()
    try:
        client.delete(GRIDSEARCH, NS, "gone")
    finally:
        client.close()

    def children() -> list[str]:
        return [
            obj["metadata"]["name"]
            for resource in (JOBS, PODS, CONFIGMAPS)
            for obj in kube.list(resource, NS)
            if obj["metadata"]["name"].startswith("gone-")
        ]

    _wait_until(lambda: not children(), timeout=30)
    assert kube.get(GRIDSEARCH, NS, "gone") is None


def test_deleting_while_the_operator_is_down_does_not_hang(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """The operator puts no finalizer on a search, so deletion never waits for it."""
    apply(kube, "orphan", iris_search(s3, "orphan"))
    wait_phase(kube, "orphan", "Running", "Reducing", "Succeeded")
    found = kube.get(GRIDSEARCH, NS, "orphan")
    assert found is not None
    assert not found["metadata"].get("finalizers")

    running.kill()
    client = kube.client()
    try:
        client.delete(GRIDSEARCH, NS, "orphan")
    finally:
        client.close()
    assert kube.get(GRIDSEARCH, NS, "orphan") is None


def test_secret_values_appear_nowhere(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """Credentials reach the pods by reference only: never copied anywhere."""
    apply(kube, "private", iris_search(s3, "private"))
    wait_phase(kube, "private", "Succeeded")

    # Everything the operator wrote or logged, and every pod's output.
    written = [
        json.dumps(obj)
        for resource in (GRIDSEARCH, CONFIGMAPS, JOBS, PODS, "v1/events")
        for obj in kube.list(resource, NS)
    ]
    written.append(running.log(all_runs=True))
    written += [p.read_text() for p in job_controller.workdir.rglob("*.log")]
    for value in (ACCESS_KEY, SECRET_KEY):
        assert not [text for text in written if value in text]


def test_the_operator_never_imports_a_module_the_user_named(
    kube: Kube,
    s3: S3,
    tmp_path: pathlib.Path,
    job_controller: JobController,
    operator: Callable[..., OperatorProcess],
) -> None:
    """Only the pods import user code; the operator passes the name on."""
    marker = tmp_path / "imported-by-operator"
    package = tmp_path / "pythonpath"
    package.mkdir()
    (package / "kubegrid_marked_model.py").write_text(
        "import pathlib, sys\n"
        "if 'kopf' in sys.modules:\n"
        f"    pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "class Model:\n"
        "    def get_params(self, deep=True):\n"
        "        return {}\n"
    )
    seed(kube, s3)
    operator(env={"PYTHONPATH": str(package)})
    spec = iris_search(s3, "marked", sharding={"shards": 1})
    spec["estimator"] = {"class": "kubegrid_marked_model.Model"}
    spec["paramGrid"] = {"alpha": [1.0]}
    apply(kube, "marked", spec)

    # The pods cannot import it (it is on the operator's path only): Failed.
    failed = wait_phase(kube, "marked", "Failed", "Succeeded")
    assert "kubegrid_marked_model" in failed["status"]["message"]
    assert kube.get(JOBS, NS, "marked-shards") is not None
    assert not marker.exists()


def _wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout}s: {predicate}")
        time.sleep(0.05)
