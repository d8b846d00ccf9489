"""Builders of small Kubernetes manifests for harness tests.

Role: tests of the harness (and any test that needs a throwaway Job, Secret,
ConfigMap or GridSearch) build their objects here instead of repeating
nested dicts. These are not kubegrid's real manifests: the operator builds
those.
"""

from __future__ import annotations

import base64
from typing import Any


def job(
    name: str,
    argv: list[str],
    *,
    completions: int = 1,
    parallelism: int | None = None,
    indexed: bool = True,
    namespace: str = "default",
    container: dict[str, Any] | None = None,
    pod_spec: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A batch/v1 Job running `argv`; `spec` adds Job fields (camelCase)."""
    main = {
        "name": "main",
        "image": "ignored:latest",
        "command": argv,
        **(container or {}),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "completions": completions,
            "parallelism": completions if parallelism is None else parallelism,
            "completionMode": "Indexed" if indexed else "NonIndexed",
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [main],
                    **(pod_spec or {}),
                }
            },
            **spec,
        },
    }


def python_job(name: str, code: str, **kwargs: Any) -> dict[str, Any]:
    """A Job whose container runs ``python -c code``."""
    return job(name, ["python", "-c", code], **kwargs)


def secret(
    name: str, data: dict[str, str], namespace: str = "default"
) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": encoded}


def config_map(
    name: str, data: dict[str, str], namespace: str = "default"
) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def grid_search(
    name: str, spec: dict[str, Any] | None = None, namespace: str = "default"
) -> dict:
    return {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {},
    }


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """`obj` with an ownerReference to `owner` (which must carry a uid)."""
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    obj.setdefault("metadata", {}).setdefault("ownerReferences", []).append(ref)
    return obj
