"""Shared tools of the chart, CRD and image tests: load, render, translate.

Called by the tests in this folder only. Rendering goes through
helm-python-sdk (the Helm v4 SDK; no helm binary exists on these machines),
and CRs are checked against the CRD's own openAPIV3Schema with jsonschema,
after translating the few OpenAPI v3.0 extensions Kubernetes uses.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubegrid"
CRD_FILE = ROOT / "crds" / "kubegrid.io_gridsearches.yaml"
PEERING_CRD_FILE = ROOT / "crds" / "kopf.dev_peerings.yaml"
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))

# The Kubernetes release the manifests are checked against: the first where
# per-index Job retries are GA (docs/cluster.md).
KUBE_VERSION = "1.33.0"

RELEASE = "kg"
RELEASE_NAMESPACE = "kubegrid-system"


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in a file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def crd() -> dict[str, Any]:
    """The GridSearch CRD from its single source, crds/."""
    (document,) = load_documents(CRD_FILE)
    return document


def version_schema(definition: dict[str, Any]) -> dict[str, Any]:
    """The openAPIV3Schema of a CRD's only version."""
    (version,) = definition["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart's rendered templates (not its crds/) as parsed documents."""
    chart = helm_python.Chart.load(str(CHART))
    try:
        files = chart.render(
            values or {}, name=RELEASE, namespace=RELEASE_NAMESPACE, is_install=True
        )
    finally:
        chart.close()
    documents = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml"):
            documents.extend(d for d in yaml.safe_load_all(text) if d)
    return documents


def render_notes(values: dict[str, Any] | None = None) -> str:
    """The rendered NOTES.txt."""
    chart = helm_python.Chart.load(str(CHART))
    try:
        files = chart.render(
            values or {}, name=RELEASE, namespace=RELEASE_NAMESPACE, is_install=True
        )
    finally:
        chart.close()
    return next(text for name, text in files.items() if name.endswith("NOTES.txt"))


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def cr_jsonschema(root: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a whole custom resource from its openAPIV3Schema.

    The API server accepts apiVersion, kind and metadata at the root whether
    the schema names them or not.
    """
    implicit = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
    }
    return to_jsonschema(root | {"properties": implicit | root.get("properties", {})})


def to_jsonschema(node: dict[str, Any], *, open_object: bool = False) -> dict[str, Any]:
    """Translate a Kubernetes structural schema into a Draft 4 JSON Schema.

    - ``nullable: true`` becomes a type union with null;
    - the ``x-kubernetes-*`` extensions, descriptions, defaults and formats go;
    - an object with ``properties`` and no preserve-unknown-fields rejects
      other keys (``additionalProperties: false``). The API server would
      prune them silently, but kubectl asks for strict field validation by
      default since 1.27 and then rejects them: this mirrors that.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: to_jsonschema(child, open_object=(name == "metadata"))
                for name, child in value.items()
            }
        elif key in ("items", "not") or (
            key == "additionalProperties" and isinstance(value, dict)
        ):
            out[key] = to_jsonschema(value)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [to_jsonschema(child) for child in value]
        elif key.startswith("x-kubernetes-") or key in (
            "description",
            "default",
            "format",
            "nullable",
        ):
            continue
        else:
            out[key] = value
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    closed = not node.get("x-kubernetes-preserve-unknown-fields") and not open_object
    if node.get("type") == "object" and "properties" in node and closed:
        out["additionalProperties"] = False
    return out


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its dotted path (``[]`` for array items)."""
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}.*")
    return found


def sync_script() -> ModuleType:
    """scripts/sync-crds.py as a module (its name has a dash)."""
    path = ROOT / "scripts" / "sync-crds.py"
    spec = importlib.util.spec_from_file_location("sync_crds", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
