"""Pure builders of the objects a GridSearch owns: its ConfigMap and two Jobs.

Called by :mod:`kubegrid.operator.handlers`, which adopts the results and
hands them to :mod:`kubegrid.operator.kube` to create. Nothing here talks to
the API or imports a module the user named: every builder takes the parsed
spec and returns a plain manifest dict.

The children, all named after the search so that a retried handler or a
restarted operator finds them again instead of creating twins::

    <name>-spec     ConfigMap   the manifest, as gridsearch.yaml
    <name>-shards   Job         Indexed; index i runs `kubegrid run-shard`
    <name>-reduce   Job         one pod running `kubegrid reduce`

The pods run a fixed command on the mounted manifest, so a manifest chooses
what a pod runs only by naming its own image.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from typing import Any

import yaml

from kubegrid import errors
from kubegrid import spec as specs

# The image the pods run when the spec names none; the chart sets the env to
# the operator's own version so operator and runner always agree.
DEFAULT_IMAGE = "kubegrid/kubegrid:0.1.0"
IMAGE_ENV = "KUBEGRID_RUNNER_IMAGE"

GRIDSEARCH_LABEL = "kubegrid.io/gridsearch"
ROLE_LABEL = "kubegrid.io/role"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

SPEC_KEY = "gridsearch.yaml"
SPEC_DIR = "/etc/kubegrid"
CONTAINER = "runner"

# Where Kubernetes copies the runner's JSON report into the pod status.
REPORT_PATH = "/dev/termination-log"

# Cluster-wide defaults the chart sets from its values; a field the spec sets
# wins over these, and these win over the manifest model's own defaults.
RESOURCES_ENV = "KUBEGRID_DEFAULT_RESOURCES"
TTL_ENV = "KUBEGRID_DEFAULT_TTL_SECONDS_AFTER_FINISHED"
BACKOFF_ENV = "KUBEGRID_DEFAULT_BACKOFF_LIMIT_PER_INDEX"
PULL_POLICY_ENV = "KUBEGRID_DEFAULT_IMAGE_PULL_POLICY"
POD_SECURITY_ENV = "KUBEGRID_DEFAULT_POD_SECURITY_CONTEXT"
CONTAINER_SECURITY_ENV = "KUBEGRID_DEFAULT_CONTAINER_SECURITY_CONTEXT"

# The distroless "nonroot" user; any non-zero uid would do, this one is the
# convention of the base image the runner ships on.
NONROOT_UID = 65532


def spec_name(search: str) -> str:
    return f"{search}-spec"


def shard_job_name(search: str) -> str:
    return f"{search}-shards"


def reducer_job_name(search: str) -> str:
    return f"{search}-reduce"


# The operator's own version: the image it runs is the one the pods run.
_VERSION = importlib.metadata.version("kubegrid")


def labels(search: str, role: str) -> dict[str, str]:
    """Labels linking a child to its search, plus the recommended app labels."""
    return {
        GRIDSEARCH_LABEL: search,
        ROLE_LABEL: role,
        "app.kubernetes.io/name": "kubegrid",
        "app.kubernetes.io/instance": search,
        "app.kubernetes.io/component": role,
        "app.kubernetes.io/part-of": "kubegrid",
        "app.kubernetes.io/version": _VERSION,
        "app.kubernetes.io/managed-by": "kubegrid-operator",
    }


def config_map(name: str, namespace: str, raw_spec: dict[str, Any]) -> dict[str, Any]:
    """The ConfigMap that delivers the manifest to every pod.

    ``raw_spec`` is the spec exactly as the API server stored it (and as the
    operator validated it), so the pods parse the very same document.
    """
    manifest = {
        "apiVersion": specs.API_VERSION,
        "kind": specs.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": raw_spec,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec_name(name),
            "namespace": namespace,
            "labels": labels(name, "spec"),
        },
        "data": {SPEC_KEY: yaml.safe_dump(manifest, sort_keys=False)},
    }


def shard_job(
    name: str, namespace: str, spec: specs.GridSearchSpec, shards: int
) -> dict[str, Any]:
    """The Indexed Job whose index i runs shard i of ``shards``."""
    command = ["kubegrid", "run-shard", f"{SPEC_DIR}/{SPEC_KEY}"]
    job = _job(name, namespace, spec, "shard", command + _tail(shards))
    job["metadata"]["name"] = shard_job_name(name)
    job["spec"].update(
        completionMode="Indexed",
        completions=shards,
        parallelism=min(spec.parallelism, shards),
        backoffLimitPerIndex=_backoff(spec),
        maxFailedIndexes=spec.job.max_failed_indexes,
        # A user error fails its index at once; a node drain is no failure.
        podFailurePolicy=_failure_policy("FailIndex"),
    )
    return job


def reducer_job(
    name: str, namespace: str, spec: specs.GridSearchSpec, shards: int
) -> dict[str, Any]:
    """The one-pod Job that merges the shards' partial results."""
    command = ["kubegrid", "reduce", f"{SPEC_DIR}/{SPEC_KEY}"]
    job = _job(name, namespace, spec, "reduce", command + _tail(shards))
    job["metadata"]["name"] = reducer_job_name(name)
    job["spec"].update(
        completions=1,
        parallelism=1,
        backoffLimit=_backoff(spec),
        podFailurePolicy=_failure_policy("FailJob"),
    )
    return job


def _backoff(spec: specs.GridSearchSpec) -> int:
    return _job_default(spec, "backoff_limit_per_index", BACKOFF_ENV)


def _job_default(spec: specs.GridSearchSpec, field: str, env: str) -> int:
    """A spec.job field: the spec's if it set one, else the chart's, else ours."""
    value: int = getattr(spec.job, field)
    if field in spec.job.model_fields_set:
        return value
    configured = os.environ.get(env, "")
    return int(configured) if configured.isdigit() else value


def _json_env(name: str) -> dict[str, Any] | None:
    """A JSON object from the operator's environment, if set and well formed."""
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None


def _tail(shards: int) -> list[str]:
    # The shard count travels on the command line: with it every pod cuts the
    # plan exactly as the operator sized the Job, whatever the data says.
    return ["--shards", str(shards), "--report-to", REPORT_PATH]


def _failure_policy(on_user_error: str) -> dict[str, Any]:
    return {
        "rules": [
            {
                "action": on_user_error,
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": [errors.EXIT_USER_ERROR],
                },
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def _job(
    name: str,
    namespace: str,
    spec: specs.GridSearchSpec,
    role: str,
    command: list[str],
) -> dict[str, Any]:
    """The parts both Jobs share: metadata, lifetime, queueing and the pod."""
    job_labels = labels(name, role)

    # Kueue admits a Job by unsuspending it, so a queued Job starts suspended.
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    job_spec: dict[str, Any] = {
        "suspend": bool(spec.suspend or spec.queue_name),
        "ttlSecondsAfterFinished": _job_default(
            spec, "ttl_seconds_after_finished", TTL_ENV
        ),
        "template": {
            "metadata": {"labels": labels(name, role)},
            "spec": _pod_spec(name, spec, command),
        },
    }
    if spec.job.timeout_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.job.timeout_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": job_labels},
        "spec": job_spec,
    }


def _pod_spec(
    name: str, spec: specs.GridSearchSpec, command: list[str]
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # The runner never calls the Kubernetes API; cloud IAM for storage
        # (IRSA, workload identity) brings its own token.
        "automountServiceAccountToken": False,
        "securityContext": _json_env(POD_SECURITY_ENV)
        or {
            "runAsNonRoot": True,
            "runAsUser": NONROOT_UID,
            "runAsGroup": NONROOT_UID,
            "fsGroup": NONROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(spec, command)],
        "volumes": [
            {"name": "spec", "configMap": {"name": spec_name(name)}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    pod.update(_scheduling(spec.pod))
    return pod


def _container(spec: specs.GridSearchSpec, command: list[str]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE,
        "imagePullPolicy": os.environ.get(PULL_POLICY_ENV) or "IfNotPresent",
        "command": command,
        "env": _env(spec.storage),
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePath": REPORT_PATH,
        # A crash before the runner writes its report still explains itself.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _json_env(CONTAINER_SECURITY_ENV)
        or {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    given = spec.resources.requests or spec.resources.limits
    chosen = spec.resources.model_dump() if given else _json_env(RESOURCES_ENV) or {}
    resources = {
        kind: {key: str(value) for key, value in amounts.items()}
        for kind, amounts in chosen.items()
        if kind in ("requests", "limits") and amounts
    }
    if resources:
        container["resources"] = resources
    return container


def _env(storage: specs.Storage) -> list[dict[str, Any]]:
    """Plain settings, plus credentials by reference: values never pass here."""
    # The root filesystem is read-only; libraries that cache go to the emptyDir.
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
        {"name": "JOBLIB_TEMP_FOLDER", "value": "/tmp"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    ref = storage.secret_ref
    if ref is None:
        return env
    keys = [
        ("AWS_ACCESS_KEY_ID", ref.access_key_id_key),
        ("AWS_SECRET_ACCESS_KEY", ref.secret_access_key_key),
    ]
    if ref.session_token_key:
        keys.append(("AWS_SESSION_TOKEN", ref.session_token_key))
    # boto3 reads the endpoint from AWS_ENDPOINT_URL when the spec gives none,
    # so a private store's address can stay in the Secret too.
    if ref.endpoint_url_key:
        keys.append(("AWS_ENDPOINT_URL", ref.endpoint_url_key))
    for variable, key in keys:
        selector = {"name": ref.name, "key": key}
        env.append({"name": variable, "valueFrom": {"secretKeyRef": selector}})
    return env


def _scheduling(pod: specs.Pod) -> dict[str, Any]:
    """spec.pod passed through under the PodSpec's own field names."""
    fields: dict[str, Any] = {
        "nodeSelector": dict(pod.node_selector) or None,
        "tolerations": list(pod.tolerations) or None,
        "affinity": dict(pod.affinity) or None,
        "priorityClassName": pod.priority_class_name,
        "serviceAccountName": pod.service_account_name,
        "imagePullSecrets": [{"name": n} for n in pod.image_pull_secrets] or None,
    }
    return {key: value for key, value in fields.items() if value is not None}
