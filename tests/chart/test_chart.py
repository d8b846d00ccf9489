"""The Helm chart: lints, renders valid manifests, keeps its security promises.

Each scenario is a values override a platform team would plausibly use. The
RBAC tests spell the full rule set out, so that any widening fails here first.
"""

from __future__ import annotations

import json
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest

from .helpers import (
    CHART,
    KUBE_VERSION,
    PEERING_CRD_FILE,
    RELEASE_NAMESPACE,
    by_kind,
    cr_jsonschema,
    load_documents,
    render,
    render_notes,
    version_schema,
)

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "peering-cluster": {"operator": {"replicas": 2, "peering": {"enabled": True}}},
    "peering-namespaced": {
        "watchNamespaces": ["ml"],
        "operator": {"replicas": 3, "peering": {"enabled": True, "name": "grid"}},
    },
    "customised": {
        "fullnameOverride": "grid-operator",
        "image": {
            "repository": "registry.example/kubegrid",
            "digest": "sha256:" + "a" * 64,
        },
        "imagePullSecrets": ["regcred"],
        "serviceAccount": {"create": False, "name": "existing"},
        "jobDefaults": {
            "image": {"repository": "registry.example/kubegrid-xgboost", "tag": "1.2"},
            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
            "ttlSecondsAfterFinished": 1000000,
            "backoffLimitPerIndex": 0,
        },
        "operator": {"verbose": True, "extraArgs": ["--log-format=json"]},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.org/team": "ml"},
    },
}

NAMESPACED_RULES = {
    ("kubegrid.io", "gridsearches", "get"),
    ("kubegrid.io", "gridsearches", "list"),
    ("kubegrid.io", "gridsearches", "watch"),
    ("kubegrid.io", "gridsearches", "patch"),
    ("kubegrid.io", "gridsearches/status", "patch"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
    ("batch", "jobs", "create"),
    ("batch", "jobs", "patch"),
    ("", "configmaps", "get"),
    ("", "configmaps", "create"),
    ("", "pods", "list"),
    ("", "events", "create"),
}
CRD_READ = {
    ("apiextensions.k8s.io", "customresourcedefinitions", verb)
    for verb in ("get", "list", "watch")
}
NAMESPACES_WATCH = {("", "namespaces", "list"), ("", "namespaces", "watch")}


def _peering(resource: str) -> set[tuple[str, str, str]]:
    return {("kopf.dev", resource, v) for v in ("get", "list", "watch", "patch")}


@pytest.fixture(scope="module", params=list(SCENARIOS))
def scenario(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(SCENARIOS[request.param])


def _deployment(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(documents, "Deployment")
    return deployment


def _container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _deployment(documents)["spec"]["template"]["spec"]["containers"]
    return container


def _argv(container: dict[str, Any]) -> list[str]:
    """What the container runs, with the peering shell wrapper unfolded."""
    command = container["command"] + container.get("args", [])
    if command[:2] == ["/bin/sh", "-c"]:
        assert command[2].startswith("exec kopf run ") and command[2].endswith('"$@"')
        return ["kopf", "run", *command[4:]]
    return command


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def _rules(documents: list[dict[str, Any]], kind: str) -> dict[str, set]:
    """Rules of each (Cluster)Role, keyed by namespace ("" for cluster-wide)."""
    found: dict[str, set] = {}
    for role in by_kind(documents, kind):
        rules = found.setdefault(role["metadata"].get("namespace", ""), set())
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    rules |= {(group, resource, verb) for verb in rule["verbs"]}
    return found


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_chart_lints_strictly(name):
    """helm lint --strict passes with no warning for every scenario."""
    report = helm_python.lint(
        str(CHART),
        SCENARIOS[name],
        strict=True,
        namespace=RELEASE_NAMESPACE,
        kube_version=f"v{KUBE_VERSION}",
    )
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); 2+ are warnings.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_rendered_manifests_pass_the_kubernetes_schemas_strictly(scenario):
    """Every rendered object is valid for Kubernetes 1.33, no unknown fields."""
    _, documents = scenario
    peering_crds = {
        d["spec"]["names"]["kind"]: version_schema(d)
        for d in load_documents(PEERING_CRD_FILE)
    }
    assert documents
    for document in documents:
        if document["apiVersion"] == "kopf.dev/v1":
            schema = cr_jsonschema(peering_crds[document["kind"]])
            jsonschema.Draft4Validator(schema).validate(document)
        else:
            kubernetes_validate.validate(document, KUBE_VERSION, strict=True)


def test_every_object_carries_the_recommended_labels(scenario):
    """app.kubernetes.io/* labels on all objects; selectors use name + instance."""
    _, documents = scenario
    for document in documents:
        labels = document["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, document["kind"]
    deployment = _deployment(documents)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_operator_pod_is_locked_down(scenario):
    """Non-root, read-only root, no escalation, no capabilities, seccomp on."""
    _, documents = scenario
    pod = _deployment(documents)["spec"]["template"]["spec"]
    container = _container(documents)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in security
    # The one writable place is an emptyDir at /tmp.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    (volume,) = pod["volumes"]
    assert volume["name"] == "tmp" and "emptyDir" in volume
    assert "hostNetwork" not in pod and "hostPID" not in pod
    assert not container["image"].endswith(":latest")
    assert container["resources"]["limits"]["memory"]


def test_job_defaults_are_locked_down_too(scenario):
    """The securityContexts handed to the operator for shard pods are as strict."""
    _, documents = scenario
    env = _env(_container(documents))
    pod = json.loads(env["KUBEGRID_DEFAULT_POD_SECURITY_CONTEXT"])
    container = json.loads(env["KUBEGRID_DEFAULT_CONTAINER_SECURITY_CONTEXT"])
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_operator_runs_kopf_with_health_probes(scenario):
    """kopf run -m kubegrid.operator.handlers, probes on its liveness endpoint."""
    name, documents = scenario
    container = _container(documents)
    argv = _argv(container)
    assert argv[:2] == ["kopf", "run"]
    assert argv[-2:] == ["-m", "kubegrid.operator.handlers"]
    port = container["ports"][0]
    assert (port["name"], port["containerPort"]) == ("health", 8080)
    assert f"--liveness=http://0.0.0.0:{port['containerPort']}/healthz" in argv
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    values = SCENARIOS[name]
    namespaces = values.get("watchNamespaces", [])
    if namespaces:
        assert "--all-namespaces" not in argv
        assert [a for a in argv if a.startswith("--namespace=")] == [
            f"--namespace={n}" for n in namespaces
        ]
    else:
        assert "--all-namespaces" in argv
        assert not any(a.startswith("--namespace") for a in argv)


def test_single_standalone_replica_by_default():
    """One replica, --standalone, and Recreate so two never overlap."""
    documents = render()
    deployment = _deployment(documents)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    argv = _argv(_container(documents))
    assert "--standalone" in argv
    assert not any(a.startswith("--peering") for a in argv)
    assert by_kind(documents, "ClusterKopfPeering") == []


def test_more_replicas_without_peering_are_refused():
    """Two standalone operators would both act on every GridSearch."""
    with pytest.raises(helm_python.HelmError, match="peering"):
        render({"operator": {"replicas": 2}})


@pytest.mark.parametrize("name", ["peering-cluster", "peering-namespaced"])
def test_peering_replaces_standalone(name):
    """With peering: --peering=NAME, a random priority each, the peering object."""
    values = SCENARIOS[name]
    documents = render(values)
    container = _container(documents)
    argv = _argv(container)
    peering = values["operator"]["peering"].get("name", "kubegrid")
    assert f"--peering={peering}" in argv and "--standalone" not in argv
    assert "--priority=" in container["command"][2]
    assert _env(container)["POD_ID"] is None  # from the downward API
    namespaces = values.get("watchNamespaces")
    kind = "KopfPeering" if namespaces else "ClusterKopfPeering"
    objects = by_kind(documents, kind)
    assert [o["metadata"]["name"] for o in objects] == [peering] * len(
        namespaces or [1]
    )
    if namespaces:
        assert [o["metadata"]["namespace"] for o in objects] == namespaces


def test_rbac_cluster_wide_is_exactly_what_the_operator_needs():
    """Cluster-wide: one ClusterRole with these rules and nothing else."""
    documents = render()
    assert _rules(documents, "ClusterRole") == {
        "": CRD_READ | NAMESPACES_WATCH | NAMESPACED_RULES
    }
    assert by_kind(documents, "Role") == []
    (binding,) = by_kind(documents, "ClusterRoleBinding")
    (subject,) = binding["subjects"]
    assert subject == {
        "kind": "ServiceAccount",
        "name": "kg-kubegrid",
        "namespace": RELEASE_NAMESPACE,
    }


def test_rbac_namespaced_grants_nothing_cluster_wide_but_crd_reads():
    """Per namespace: a Role each; the ClusterRole only reads CRDs."""
    documents = render(SCENARIOS["namespaced"])
    assert _rules(documents, "ClusterRole") == {"": CRD_READ}
    assert _rules(documents, "Role") == {
        "team-a": NAMESPACED_RULES,
        "team-b": NAMESPACED_RULES,
    }
    bindings = by_kind(documents, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]


def test_rbac_with_peering_adds_only_the_peering_objects():
    documents = render(SCENARIOS["peering-cluster"])
    assert _rules(documents, "ClusterRole") == {
        "": CRD_READ
        | NAMESPACES_WATCH
        | NAMESPACED_RULES
        | _peering("clusterkopfpeerings")
    }
    documents = render(SCENARIOS["peering-namespaced"])
    assert _rules(documents, "ClusterRole") == {"": CRD_READ}
    assert _rules(documents, "Role") == {
        "ml": NAMESPACED_RULES | _peering("kopfpeerings")
    }


def test_rbac_never_reaches_secrets_or_wildcards(scenario):
    """Pods read the S3 Secret through secretKeyRef; the operator never does."""
    _, documents = scenario
    for kind in ("ClusterRole", "Role"):
        for rules in _rules(documents, kind).values():
            for group, resource, verb in rules:
                assert "*" not in (group, resource, verb)
                assert resource != "secrets"
    assert all(
        rule["resources"] != ["pods"] or set(rule["verbs"]) <= {"get", "list", "watch"}
        for role in by_kind(documents, "ClusterRole") + by_kind(documents, "Role")
        for rule in role["rules"]
    )


def test_rbac_can_be_left_to_the_cluster_admin():
    documents = render({"rbac": {"create": False}})
    assert {d["kind"] for d in documents} == {"Deployment", "ServiceAccount"}


def test_job_defaults_reach_the_operator_as_env():
    """Runner image, resources, TTL and backoff arrive as KUBEGRID_* variables."""
    env = _env(_container(render()))
    assert env["KUBEGRID_RUNNER_IMAGE"] == "kubegrid/kubegrid:0.1.0"
    assert json.loads(env["KUBEGRID_DEFAULT_RESOURCES"]) == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }
    assert env["KUBEGRID_DEFAULT_TTL_SECONDS_AFTER_FINISHED"] == "86400"
    assert env["KUBEGRID_DEFAULT_BACKOFF_LIMIT_PER_INDEX"] == "2"
    assert env["KUBEGRID_DEFAULT_IMAGE_PULL_POLICY"] == "IfNotPresent"

    documents = render(SCENARIOS["customised"])
    container = _container(documents)
    env = _env(container)
    assert env["KUBEGRID_RUNNER_IMAGE"] == "registry.example/kubegrid-xgboost:1.2"
    # Large integers stay integers (YAML numbers reach templates as floats).
    assert env["KUBEGRID_DEFAULT_TTL_SECONDS_AFTER_FINISHED"] == "1000000"
    assert env["KUBEGRID_DEFAULT_BACKOFF_LIMIT_PER_INDEX"] == "0"
    assert container["image"] == "registry.example/kubegrid@sha256:" + "a" * 64
    pod = _deployment(documents)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "existing"
    assert by_kind(documents, "ServiceAccount") == []


def test_runner_image_follows_the_operator_image_by_default():
    """Operator and runner share one image unless told otherwise."""
    env = _env(_container(render({"image": {"tag": "9.9.9"}})))
    assert env["KUBEGRID_RUNNER_IMAGE"] == "kubegrid/kubegrid:9.9.9"


def test_notes_say_how_to_submit_and_watch():
    notes = render_notes()
    assert "kubectl get gs -w" in notes and "kubectl wait" in notes
    assert len(notes.strip().splitlines()) <= 10
    assert "team-a, team-b" in render_notes(SCENARIOS["namespaced"])


def _comment_above(lines: list[str], number: int) -> str:
    """The first line of the comment block right above a line, or ''."""
    block = ""
    for back in range(number - 1, -1, -1):
        if not lines[back].strip().startswith("#"):
            break
        block = lines[back].strip()
    return block


def test_every_values_key_is_documented():
    """Each key of values.yaml has a comment right above it.

    A "# --" comment documents the key's whole value, so keys inside that
    value (a securityContext spelled out, say) need none of their own.
    """
    lines = (CHART / "values.yaml").read_text().splitlines()
    ancestors: list[tuple[int, str]] = []  # (indent, comment) of open keys
    keys = 0
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        ancestors = [(i, c) for i, c in ancestors if i < indent]
        comment = _comment_above(lines, number)
        covered = any(c.startswith("# --") for _, c in ancestors)
        assert comment or covered, f"undocumented key, line {number + 1}: {line}"
        keys += 1
        ancestors.append((indent, comment))
    assert keys > 30
