"""The operator's reach stays narrow: its RBAC, its pods, what a manifest can do.

Runs the real operator against the emulator (see tests/operator/test_e2e.py for
the harness). The RBAC test compares the requests the operator process made
with the rules the Helm chart renders, in both directions, so widening either
the code's calls or the chart's grants fails here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.chart.helpers import by_kind, render
from tests.operator.test_e2e import (
    NS,
    apply,
    condition,
    iris_search,
    seed,
    wait_phase,
)
from tests.support.fixtures import S3
from tests.support.jobcontroller import JOBS, JobController
from tests.support.kube import GRIDSEARCH, Kube, RequestRecord
from tests.support.operator_proc import OperatorProcess

Rule = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# Rules granted per namespace that one run cannot exercise, each with why it
# is still needed. Empty: the RBAC scenario below reaches every one.
GRANTED_BUT_UNUSED: dict[Rule, str] = {}

# Resources the chart grants cluster-wide by nature, not per namespace.
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces", "clusterkopfpeerings"}

# kopf keeps its bookkeeping in annotations under this prefix, and marks a
# creation fully handled with the diffbase one (handlers.configure).
KOPF_PREFIX = "kubegrid.io/"
KOPF_DIFFBASE = f"{KOPF_PREFIX}last-handled-configuration"

RUN_TIMEOUT = 180.0


def rbac_rule(record: RequestRecord) -> Rule | None:
    """The RBAC rule a request needs; None for discovery (non-resource URLs)."""
    if record.plural is None:
        return None
    parts = record.path.split("?")[0].strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    resource = record.plural
    if record.subresource:
        resource += f"/{record.subresource}"
    if record.method == "GET":
        if record.action == "watch":
            verb = "watch"
        else:
            verb = "get" if record.action == "fetch" else "list"
    else:
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(
            record.method, record.method.lower()
        )
    return group, resource, verb


def granted_rules() -> set[Rule]:
    """Every rule of the chart's default (cluster-wide) install."""
    rules: set[Rule] = set()
    for role in by_kind(render(), "ClusterRole") + by_kind(render(), "Role"):
        for rule in role["rules"]:
            rules |= {
                (group, resource, verb)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    return rules


def test_rbac_rules_are_exactly_the_calls_the_operator_makes(
    kube: Kube,
    s3: S3,
    job_controller: JobController,
    operator: Callable[..., OperatorProcess],
) -> None:
    """Used ⊆ granted, and every namespaced grant is used (or justified).

    The run covers each path that calls the API: admission, suspend and
    resume, a crash after the children were created but before kopf recorded
    it (the create handler runs again and meets 409s), the shards, the
    reducer and the pods' reports.
    """
    seed(kube, s3)
    process = operator()
    start = kube.mark()
    spec = iris_search(s3, "narrow", parallelism=1, sharding={"shards": 1})
    apply(kube, "narrow", spec | {"suspend": True})
    handled = kube.wait_for(GRIDSEARCH, NS, "narrow", _creation_handled, timeout=60)

    # A crash just after the children were created, before kopf recorded it:
    # without its bookkeeping, a restarted operator handles the creation again.
    process.kill()
    kopf_marks = {
        key: None
        for key in handled["metadata"].get("annotations", {})
        if key.startswith(KOPF_PREFIX)
    }
    _patch(kube, GRIDSEARCH, "narrow", {"metadata": {"annotations": kopf_marks}})
    retried = kube.mark()
    process.start()
    _wait(lambda: kube.count(since=retried, action="fetch", plural="jobs") > 0)
    _patch(kube, GRIDSEARCH, "narrow", {"spec": {"suspend": False}})
    done = wait_phase(kube, "narrow", "Succeeded", "Failed", timeout=RUN_TIMEOUT)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")

    # Every request not sent by the harness came from the operator process,
    # through kopf's own client or the kubernetes client.
    made = kube.requests(since=start)
    agents = {r.user_agent.split("/")[0] for r in made}
    assert agents <= {"kopf", "OpenAPI-Generator"}, agents
    used = {rule for r in made if (rule := rbac_rule(r)) is not None}
    granted = granted_rules()
    assert used - granted == set()
    namespaced = {
        rule for rule in granted if rule[1].split("/")[0] not in CLUSTER_SCOPED
    }
    assert namespaced - used - set(GRANTED_BUT_UNUSED) == set()
    assert set(GRANTED_BUT_UNUSED) <= namespaced - used
    assert kube.count(since=retried, method="POST", plural="configmaps") == 1


def _creation_handled(obj: dict[str, Any]) -> bool:
    suspended = condition(obj, "Suspended")
    annotations = obj["metadata"].get("annotations") or {}
    return (
        suspended is not None
        and suspended["status"] == "True"
        and KOPF_DIFFBASE in annotations
        and not any(k.startswith(f"{KOPF_PREFIX}created") for k in annotations)
    )


def _patch(kube: Kube, resource: str, name: str, body: dict[str, Any]) -> None:
    client = kube.client()
    try:
        client.patch(resource, NS, name, body)
    finally:
        client.close()


def _complete_shards(kube: Kube, name: str) -> None:
    """Mark the shard Job complete, as the Job controller would."""
    kube.wait_for(JOBS, NS, f"{name}-shards", timeout=30)
    status = {
        "succeeded": 1,
        "completedIndexes": "0",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    client = kube.client()
    try:
        client.patch(JOBS, NS, f"{name}-shards", {"status": status}, "status")
    finally:
        client.close()


def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not true after {timeout}s"
        time.sleep(0.05)


# -- the pods ---------------------------------------------------------------------

POD_FIELDS = {
    "nodeSelector": {"pool": "cpu"},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {}},
    "priorityClassName": "batch-low",
    "serviceAccountName": "ml-runner",
    "imagePullSecrets": ["registry"],
}


def _pod_templates(kube: Kube, name: str) -> list[dict[str, Any]]:
    jobs = [kube.get(JOBS, NS, f"{name}-{role}") for role in ("shards", "reduce")]
    return [job["spec"]["template"]["spec"] for job in jobs if job is not None]


def _assert_locked_down(pod: dict[str, Any]) -> None:
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "initContainers" not in pod and "hostNetwork" not in pod


def test_pods_keep_their_security_context_whatever_spec_pod_sets(
    kube: Kube, s3: S3, operator: Callable[..., OperatorProcess]
) -> None:
    operator()
    apply(kube, "locked", iris_search(s3, "locked", pod=POD_FIELDS))
    _complete_shards(kube, "locked")
    kube.wait_for(JOBS, NS, "locked-reduce", timeout=30)

    templates = _pod_templates(kube, "locked")
    assert len(templates) == 2
    for pod in templates:
        _assert_locked_down(pod)
        # The scheduling fields pass through, and only those.
        assert pod["serviceAccountName"] == "ml-runner"
        assert pod["nodeSelector"] == {"pool": "cpu"}
        assert pod["imagePullSecrets"] == [{"name": "registry"}]


# -- what a manifest can make a pod run ---------------------------------------------

# Fields a manifest might use to smuggle a command, an environment or a
# privilege into the pods, and the field the refusal must name.
SMUGGLED: dict[str, tuple[dict[str, Any], str]] = {
    "pod-command": ({"pod": {"command": ["sh", "-c", "id"]}}, "spec.pod.command"),
    "pod-args": ({"pod": {"args": ["-c", "id"]}}, "spec.pod.args"),
    "pod-security": (
        {"pod": {"securityContext": {"runAsUser": 0}}},
        "spec.pod.securityContext",
    ),
    "pod-containers": (
        {"pod": {"containers": [{"name": "x", "image": "evil"}]}},
        "spec.pod.containers",
    ),
    "resources-command": (
        {"resources": {"limits": {"memory": "1Gi"}, "command": ["sh"]}},
        "spec.resources.command",
    ),
    "top-level-env": ({"env": [{"name": "LD_PRELOAD", "value": "/x.so"}]}, "spec.env"),
    "storage-env": ({"storage": {"env": {"PATH": "/evil"}}}, "spec.storage.env"),
    "estimator-command": (
        {
            "estimator": {
                "class": "sklearn.tree.DecisionTreeClassifier",
                "params": {"command": "sh"},
            }
        },
        "spec.estimator.params.command",
    ),
    "toleration-command": (
        {
            "pod": {
                "tolerations": [{"key": "k", "operator": "Exists", "command": ["sh"]}]
            }
        },
        "spec.pod.tolerations[0].command",
    ),
    "affinity-command": (
        {"pod": {"affinity": {"command": ["sh"]}}},
        "spec.pod.affinity.command",
    ),
}

DEFAULT_IMAGE = "kubegrid/kubegrid:0.1.0"
FIXED_ENV = {"HOME", "MPLCONFIGDIR", "JOBLIB_TEMP_FOLDER", "PYTHONDONTWRITEBYTECODE"}


def _assert_runs_kubegrid(pod: dict[str, Any], image: str) -> None:
    _assert_locked_down(pod)
    (container,) = pod["containers"]
    assert container["command"][:2] in (
        ["kubegrid", "run-shard"],
        ["kubegrid", "reduce"],
    )
    assert container["command"][2] == "/etc/kubegrid/gridsearch.yaml"
    assert "args" not in container and "envFrom" not in container
    for env in container["env"]:
        # Plain settings of kubegrid's own, or credentials by reference.
        if env["name"] in FIXED_ENV:
            assert set(env) == {"name", "value"}
        else:
            assert env["name"].startswith("AWS_")
            assert set(env["valueFrom"]) == {"secretKeyRef"}
    assert container["image"] == image


def test_a_manifest_cannot_choose_what_its_pods_run(
    kube: Kube, s3: S3, operator: Callable[..., OperatorProcess]
) -> None:
    """Smuggled commands are refused naming the field; only spec.image counts.

    The manifests go straight to the API, past the CRD schema: an API server
    with an older CRD, or a field the schema leaves open, must not matter.
    """
    operator()
    client = kube.client()
    try:
        for case, (change, _) in SMUGGLED.items():
            body = {
                "apiVersion": "kubegrid.io/v1alpha1",
                "kind": "GridSearch",
                "metadata": {"name": case, "namespace": NS},
                "spec": _deep_merge(iris_search(s3, case, storage={}), change),
            }
            client.create(GRIDSEARCH, NS, body)
        image = "registry.example/team/kubegrid:own"
        client.create(
            GRIDSEARCH,
            NS,
            {
                "apiVersion": "kubegrid.io/v1alpha1",
                "kind": "GridSearch",
                "metadata": {"name": "own-image", "namespace": NS},
                "spec": iris_search(s3, "own-image", image=image),
            },
        )
    finally:
        client.close()

    for case, (_, field) in SMUGGLED.items():
        status = wait_phase(kube, case, "Failed", "Pending", timeout=60)["status"]
        assert status["phase"] == "Failed", (case, status)
        assert status["message"].startswith(f"{field}: "), status["message"]
        assert _pod_templates(kube, case) == []

    # Naming its own image is the one way to run other code; the command and
    # the lockdown stay.
    _complete_shards(kube, "own-image")
    kube.wait_for(JOBS, NS, "own-image-reduce", timeout=30)
    for pod in _pod_templates(kube, "own-image"):
        _assert_runs_kubegrid(pod, image)


def _deep_merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
