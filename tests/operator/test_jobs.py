"""The ConfigMap and Job builders: what the pods receive and how they run."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubegrid import spec as specs
from kubegrid.operator import jobs

# The oldest Kubernetes with backoffLimitPerIndex and podFailurePolicy GA-ish.
KUBERNETES = "1.30.0"


def parsed(raw: dict[str, Any]) -> specs.GridSearchSpec:
    manifest = {
        "apiVersion": specs.API_VERSION,
        "kind": specs.KIND,
        "metadata": {"name": "gs"},
        "spec": raw,
    }
    return specs.parse(manifest).spec


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_jobs_are_valid_kubernetes_manifests(spec: dict[str, Any]) -> None:
    """Both Jobs and the ConfigMap pass the upstream schema, strictly."""
    for obj in (
        jobs.config_map("gs", "ml", spec),
        jobs.shard_job("gs", "ml", parsed(spec), 8),
        jobs.reducer_job("gs", "ml", parsed(spec), 8),
    ):
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_config_map_holds_the_manifest_the_operator_validated(
    spec: dict[str, Any],
) -> None:
    """The pods parse the very spec the operator admitted."""
    cm = jobs.config_map("gs", "ml", spec)
    document = yaml.safe_load(cm["data"][jobs.SPEC_KEY])
    assert cm["metadata"]["name"] == "gs-spec"
    assert document["spec"] == spec
    assert specs.parse(document).metadata.name == "gs"


def test_shard_job_is_indexed_with_per_index_retries(spec: dict[str, Any]) -> None:
    spec["parallelism"] = 3
    spec["job"] = {"backoffLimitPerIndex": 4, "maxFailedIndexes": 1}
    job = jobs.shard_job("gs", "ml", parsed(spec), 10)["spec"]
    assert job["completionMode"] == "Indexed"
    assert (job["completions"], job["parallelism"]) == (10, 3)
    assert (job["backoffLimitPerIndex"], job["maxFailedIndexes"]) == (4, 1)
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_parallelism_never_exceeds_the_shard_count(spec: dict[str, Any]) -> None:
    spec["parallelism"] = 16
    assert jobs.shard_job("gs", "ml", parsed(spec), 5)["spec"]["parallelism"] == 5


def test_user_errors_fail_the_index_and_disruptions_are_ignored(
    spec: dict[str, Any],
) -> None:
    """Exit code 2 never burns retries; a drained node never counts."""
    rules = jobs.shard_job("gs", "ml", parsed(spec), 2)["spec"]["podFailurePolicy"][
        "rules"
    ]
    assert rules[0]["action"] == "FailIndex"
    assert rules[0]["onExitCodes"] == {
        "containerName": "runner",
        "operator": "In",
        "values": [2],
    }
    assert rules[1]["action"] == "Ignore"
    assert rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    reducer = jobs.reducer_job("gs", "ml", parsed(spec), 2)["spec"]
    assert reducer["podFailurePolicy"]["rules"][0]["action"] == "FailJob"


def test_pods_run_the_runner_on_the_mounted_manifest(spec: dict[str, Any]) -> None:
    shard = container(jobs.shard_job("gs", "ml", parsed(spec), 7))
    assert shard["command"] == [
        "kubegrid",
        "run-shard",
        "/etc/kubegrid/gridsearch.yaml",
        "--shards",
        "7",
        "--report-to",
        "/dev/termination-log",
    ]
    assert shard["terminationMessagePath"] == "/dev/termination-log"
    reduce = container(jobs.reducer_job("gs", "ml", parsed(spec), 7))
    assert reduce["command"][:2] == ["kubegrid", "reduce"]


def test_pods_keep_a_locked_down_security_context(spec: dict[str, Any]) -> None:
    """Non-root, read-only root, no escalation, no capabilities, seccomp."""
    pod = jobs.shard_job("gs", "ml", parsed(spec), 1)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = pod["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"


def test_credentials_travel_only_as_secret_references(spec: dict[str, Any]) -> None:
    spec["storage"] = {
        "endpointUrl": "http://s3.local:9000",
        "secretRef": {"name": "s3-creds", "sessionTokenKey": "token"},
    }
    env = {
        e["name"]: e
        for e in container(jobs.shard_job("gs", "ml", parsed(spec), 1))["env"]
    }
    for variable, key in (
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_SESSION_TOKEN", "token"),
    ):
        assert env[variable] == {
            "name": variable,
            "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": key}},
        }
    assert "AWS_ENDPOINT_URL" not in env


def test_the_endpoint_may_come_from_the_secret(spec: dict[str, Any]) -> None:
    """A private store's address can stay in the Secret beside the keys."""
    spec["storage"] = {"secretRef": {"name": "s3", "endpointUrlKey": "endpoint"}}
    job = jobs.shard_job("gs", "ml", parsed(spec), 1)
    env = {e["name"]: e for e in container(job)["env"]}
    assert env["AWS_ENDPOINT_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3", "key": "endpoint"}
    }
    assert "value" not in env["AWS_ENDPOINT_URL"]


def test_image_resources_and_scheduling_pass_through(spec: dict[str, Any]) -> None:
    spec["image"] = "registry.local/kubegrid:dev"
    spec["resources"] = {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
    spec["pod"] = {
        "nodeSelector": {"pool": "cpu"},
        "tolerations": [{"key": "batch", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": "low",
        "serviceAccountName": "trainer",
        "imagePullSecrets": ["regcred"],
    }
    pod = jobs.shard_job("gs", "ml", parsed(spec), 1)["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.local/kubegrid:dev"
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "500m"},
        "limits": {"memory": "1Gi"},
    }
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert pod["tolerations"] == [{"key": "batch", "operator": "Exists"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["priorityClassName"] == "low"
    assert pod["serviceAccountName"] == "trainer"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_image_defaults_to_the_operators_setting(
    spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert container(jobs.shard_job("gs", "ml", parsed(spec), 1))["image"] == (
        jobs.DEFAULT_IMAGE
    )
    monkeypatch.setenv(jobs.IMAGE_ENV, "mirror.local/kubegrid:0.1.0")
    assert container(jobs.shard_job("gs", "ml", parsed(spec), 1))["image"] == (
        "mirror.local/kubegrid:0.1.0"
    )


def test_a_queued_search_starts_suspended_with_kueues_label(
    spec: dict[str, Any],
) -> None:
    spec["queueName"] = "team-a"
    job = jobs.shard_job("gs", "ml", parsed(spec), 1)
    assert job["metadata"]["labels"][jobs.KUEUE_QUEUE_LABEL] == "team-a"
    assert job["spec"]["suspend"] is True


def test_suspend_and_lifetime_come_from_the_spec(spec: dict[str, Any]) -> None:
    spec["suspend"] = True
    spec["job"] = {"timeoutSeconds": 600, "ttlSecondsAfterFinished": 120}
    for job in (
        jobs.shard_job("gs", "ml", parsed(spec), 1),
        jobs.reducer_job("gs", "ml", parsed(spec), 1),
    ):
        assert job["spec"]["suspend"] is True
        assert job["spec"]["activeDeadlineSeconds"] == 600
        assert job["spec"]["ttlSecondsAfterFinished"] == 120
    spec.pop("suspend")
    assert jobs.shard_job("gs", "ml", parsed(spec), 1)["spec"]["suspend"] is False


def test_children_are_named_and_labelled_after_their_search(
    spec: dict[str, Any],
) -> None:
    shard = jobs.shard_job("gs", "ml", parsed(spec), 1)
    reducer = jobs.reducer_job("gs", "ml", parsed(spec), 1)
    assert (shard["metadata"]["name"], reducer["metadata"]["name"]) == (
        "gs-shards",
        "gs-reduce",
    )
    for job, role in ((shard, "shard"), (reducer, "reduce")):
        for labels in (
            job["metadata"]["labels"],
            job["spec"]["template"]["metadata"]["labels"],
        ):
            assert labels[jobs.GRIDSEARCH_LABEL] == "gs"
            assert labels[jobs.ROLE_LABEL] == role
            assert labels["app.kubernetes.io/instance"] == "gs"
            assert labels["app.kubernetes.io/part-of"] == "kubegrid"
            assert labels["app.kubernetes.io/version"] == (
                importlib.metadata.version("kubegrid")
            )


def test_chart_defaults_apply_where_the_spec_is_silent(
    spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's environment fills Job fields the spec leaves out."""
    monkeypatch.setenv(jobs.TTL_ENV, "600")
    monkeypatch.setenv(jobs.BACKOFF_ENV, "5")
    monkeypatch.setenv(jobs.RESOURCES_ENV, '{"limits": {"memory": "3Gi"}}')
    monkeypatch.setenv(jobs.PULL_POLICY_ENV, "Always")
    job = jobs.shard_job("gs", "ml", parsed(spec), 4)
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["backoffLimitPerIndex"] == 5
    assert container(job)["resources"] == {"limits": {"memory": "3Gi"}}
    assert container(job)["imagePullPolicy"] == "Always"


def test_spec_fields_win_over_chart_defaults(
    spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value the manifest sets is never replaced by a cluster default."""
    monkeypatch.setenv(jobs.TTL_ENV, "600")
    monkeypatch.setenv(jobs.BACKOFF_ENV, "5")
    monkeypatch.setenv(jobs.RESOURCES_ENV, '{"limits": {"memory": "3Gi"}}')
    spec["job"] = {"backoffLimitPerIndex": 1, "ttlSecondsAfterFinished": 60}
    spec["resources"] = {"limits": {"memory": "1Gi"}}
    job = jobs.shard_job("gs", "ml", parsed(spec), 4)
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    assert job["spec"]["backoffLimitPerIndex"] == 1
    assert container(job)["resources"] == {"limits": {"memory": "1Gi"}}
