"""Faults and hostile manifests, seen from the operator: every run ends definite.

The runs use the real operator, the Job-controller harness and moto (see
tests/operator/test_e2e.py for the harness); the property tests call the
operator's admission as a pure function. The engine's side of the same faults
is tested in tests/faults/.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import sklearn.datasets
from hypothesis import strategies as st
from sklearn.model_selection import GridSearchCV
from sklearn.tree import DecisionTreeClassifier

from kubegrid.errors import SpecError
from kubegrid.operator import sizing
from tests.operator.test_e2e import (
    NS,
    apply,
    iris_search,
    seed,
    wait_phase,
)
from tests.support.fixtures import S3
from tests.support.jobcontroller import JOBS, JobController
from tests.support.kube import GRIDSEARCH, Kube
from tests.support.operator_proc import OperatorProcess

# A run on iris is a few pod start-ups; on a loaded two-core machine each
# takes up to half a minute.
RUN_TIMEOUT = 180.0


@pytest.fixture
def running(
    kube: Kube,
    s3: S3,
    job_controller: JobController,
    operator: Callable[..., OperatorProcess],
) -> OperatorProcess:
    seed(kube, s3)
    return operator()


def one_shard(s3: S3, name: str, **changes: Any) -> dict[str, Any]:
    """An iris search in one shard run by one pod: the cheapest real run."""
    return iris_search(s3, name, parallelism=1, sharding={"shards": 1}, **changes)


# -- faults ---------------------------------------------------------------------


def test_a_dataset_in_a_missing_bucket_fails_each_index_once_naming_the_uri(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """A permanent storage error is the user's to fix: no retry storm."""
    spec = iris_search(s3, "nobucket", parallelism=2, sharding={"shards": 2})
    uri = "s3://kubegrid-no-such-bucket/iris.csv"
    spec["dataset"]["uri"] = uri
    spec["job"] = {"backoffLimitPerIndex": 3}
    apply(kube, "nobucket", spec)

    failed = wait_phase(kube, "nobucket", "Failed", "Succeeded", timeout=RUN_TIMEOUT)
    message = failed["status"]["message"]
    assert failed["status"]["phase"] == "Failed"
    assert uri in message
    assert f"{uri}: NoSuchBucket" in message, message
    assert job_controller.starts(NS, "nobucket-shards") == {0: 1, 1: 1}
    assert kube.get(JOBS, NS, "nobucket-reduce") is None


def test_every_fit_failing_fails_promptly_with_the_fit_error(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    spec = one_shard(s3, "badfits")
    # Valid parameters that every fit refuses: iris has no class 5 to weigh.
    spec["estimator"] = {
        "class": "sklearn.svm.SVC",
        "params": {"class_weight": {"5": 2.0}},
    }
    spec["paramGrid"] = {"C": [1.0, 2.0]}
    apply(kube, "badfits", spec)

    failed = wait_phase(kube, "badfits", "Failed", "Succeeded", timeout=RUN_TIMEOUT)
    message = failed["status"]["message"]
    assert failed["status"]["phase"] == "Failed"
    assert "all 6 fits failed" in message
    assert "The classes, [0, 1, 2], are not in class_weight" in message
    assert job_controller.starts(NS, "badfits-shards") == {0: 1}
    assert job_controller.starts(NS, "badfits-reduce") == {0: 1}


def test_a_partial_altered_before_the_reduce_is_recomputed(
    kube: Kube, s3: S3, running: OperatorProcess, job_controller: JobController
) -> None:
    """A shard file that fails its checksum is named, then its shard runs again.

    The test plays Kueue: with a queue name both Jobs start suspended, so the
    partial can be altered after the shards finish and before the reducer
    starts.
    """
    spec = iris_search(s3, "altered", parallelism=2, queueName="team")
    spec["sharding"] = {"shards": 2}
    apply(kube, "altered", spec)
    admit_job(kube, "altered-shards")
    job_controller.wait_finished(NS, "altered-shards", timeout=RUN_TIMEOUT)

    # Flip one byte of the body of shard 1's file; the header keeps its sum.
    prefix = "results/altered/partials/"
    keys = [
        item["Key"]
        for item in s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)[
            "Contents"
        ]
    ]
    (key,) = [k for k in keys if k.endswith("/shard-00001.json")]
    data = bytearray(s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read())
    at = data.index(b'"', data.index(b"\n"))
    data[at + 1] ^= 0x01
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(data))
    kube.wait_for(JOBS, NS, "altered-reduce", timeout=30)
    admit_job(kube, "altered-reduce")

    done = wait_phase(kube, "altered", "Succeeded", "Failed", timeout=RUN_TIMEOUT)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert done["status"]["bestParams"] == iris_best(spec)
    logs = job_controller.workdir.rglob("altered-reduce/*.log")
    reducer_log = "".join(p.read_text() for p in logs)
    assert re.search(r"shard-00001\.json: checksum mismatch", reducer_log)
    assert set(job_controller.starts(NS, "altered-shards").values()) == {1}
    assert job_controller.starts(NS, "altered-reduce") == {0: 1}


def admit_job(kube: Kube, name: str) -> None:
    """Unsuspend a queued Job, as Kueue does when its queue admits it."""
    kube.wait_for(JOBS, NS, name, timeout=30)
    client = kube.client()
    try:
        client.patch(JOBS, NS, name, {"spec": {"suspend": False}})
    finally:
        client.close()


def iris_best(spec: dict[str, Any]) -> dict[str, Any]:
    frame = sklearn.datasets.load_iris(as_frame=True).frame
    y = frame.pop("target")
    search = GridSearchCV(
        DecisionTreeClassifier(), spec["paramGrid"], cv=spec["cv"], scoring="accuracy"
    )
    search.fit(frame, y)
    best: dict[str, Any] = search.best_params_
    return best


# -- hostile manifests ------------------------------------------------------------

# Valid specs the mutations start from: the shapes a user writes most.
BASES: list[dict[str, Any]] = [
    {
        "dataset": {"uri": "s3://b/iris.csv", "target": "target"},
        "estimator": {"class": "sklearn.tree.DecisionTreeClassifier"},
        "paramGrid": {"max_depth": [1, 2, 3]},
        "cv": 3,
        "scoring": "accuracy",
        "output": {"uri": "s3://b/out"},
    },
    {
        "dataset": {"uri": "data/wine.csv", "target": "target"},
        "estimator": {
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {
                    "name": "clf",
                    "class": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 500},
                },
            ]
        },
        "paramGrid": {"clf__C": {"distribution": "loguniform", "a": 0.001, "b": 100.0}},
        "search": {"type": "random", "nIter": 5, "randomState": 0},
        "cv": {
            "splitter": "StratifiedKFold",
            "nSplits": 4,
            "shuffle": True,
            "randomState": 0,
        },
        "scoring": ["accuracy", "f1_macro"],
        "refit": "accuracy",
        "sharding": {"tasksPerShard": 7},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "pod": {"nodeSelector": {"pool": "cpu"}},
        "job": {"backoffLimitPerIndex": 1},
        "output": {"uri": "results/wine"},
    },
    {
        "dataset": {"uri": "data/d.csv", "target": "y", "groups": "g"},
        "estimator": {"class": "sklearn.svm.SVC", "params": {"kernel": "rbf"}},
        "paramGrid": [{"C": [0.1, 1.0]}, {"gamma": [0.01], "C": [1.0]}],
        "cv": {"splitter": "GroupKFold", "nSplits": 3},
        "errorScore": "raise",
        "parallelism": 2,
        "output": {"uri": "results/d"},
    },
]

# Junk of every JSON type, and text that looks like the real thing.
_JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["sklearn.svm.SVX", "KFold", "nan", "-1Gi", "0", "1e400", "random", "grid"]
    ),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a nested document, the root included."""
    found = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*path, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _paths(child, (*path, i))
    return found


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec, then one to three mutations at random positions."""
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        path = draw(st.sampled_from(_paths(spec)[1:]))
        parent = spec
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["delete", "junk", "rename", "add", "wrap"]))
        if action == "delete":
            del parent[last]
        elif action == "junk":
            parent[last] = draw(_JUNK)
        elif action == "wrap":
            parent[last] = [parent[last]]
        elif isinstance(parent, dict):
            if action == "rename":
                parent[last + draw(st.text(min_size=1, max_size=3))] = parent.pop(last)
            else:
                parent[draw(st.text(max_size=12))] = draw(_JUNK)
    return spec


def test_valid_bases_are_admitted() -> None:
    for base in BASES:
        _, plan = sizing.admit("base", NS, base)
        assert plan.n_shards >= 1


@hypothesis.settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
@hypothesis.given(mutated_specs())
def test_admission_of_any_manifest_is_definite(spec: dict[str, Any]) -> None:
    """Admitted with a plan size, or refused naming a field; never a crash."""
    try:
        _, plan = sizing.admit("gs", NS, spec)
    except SpecError as exc:
        assert re.match(r"(spec|metadata)\b", exc.field), exc
        assert str(exc).startswith(f"{exc.field}: ")
        return
    assert plan.n_candidates >= 1
    assert plan.n_shards >= 1
    assert plan.n_tasks is None or plan.n_tasks >= plan.n_shards


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(_JUNK)
def test_admission_of_any_json_value_as_the_spec_is_definite(raw: Any) -> None:
    with pytest.raises(SpecError):
        sizing.admit("gs", NS, raw if isinstance(raw, dict) else {"spec": raw})


def _hostile_examples() -> list[dict[str, Any]]:
    """Five mutated manifests, drawn once with a fixed seed for the real run."""
    drawn: list[dict[str, Any]] = []

    @hypothesis.settings(max_examples=5, database=None, derandomize=True, deadline=None)
    @hypothesis.given(mutated_specs())
    def collect(spec: dict[str, Any]) -> None:
        drawn.append(spec)

    collect()
    return drawn[:5]


def test_hostile_manifests_end_definite_in_the_real_operator(
    kube: Kube, operator: Callable[..., OperatorProcess]
) -> None:
    """Each lands Failed with a message, or Pending with a Job; no traceback."""
    process = operator()
    examples = _hostile_examples()
    client = kube.client()
    try:
        for i, spec in enumerate(examples):
            body = {
                "apiVersion": "kubegrid.io/v1alpha1",
                "kind": "GridSearch",
                "metadata": {"name": f"hostile-{i}", "namespace": NS},
                "spec": spec,
            }
            client.create(GRIDSEARCH, NS, body)
    finally:
        client.close()

    for i in range(len(examples)):
        found = wait_phase(kube, f"hostile-{i}", "Failed", "Pending", timeout=60)
        status = found["status"]
        assert status["message"], status
        if status["phase"] == "Pending":  # written just before the Job
            kube.wait_for(JOBS, NS, f"hostile-{i}-shards", timeout=30)
    assert "Traceback" not in process.log(), process.log()[-3000:]
