"""The GridSearch CRD: valid, structural, a faithful mirror of the spec model.

The CRD in crds/ is hand-written, and runner/spec.py is the model every
process parses manifests with; these tests keep the two from drifting apart
and check every example against both.
"""

from __future__ import annotations

import copy
import types
import typing
from typing import Any

import annotated_types
import jsonschema
import kubernetes_validate
import pydantic
import pytest

from kubegrid import errors
from kubegrid import spec as specs

from .helpers import (
    EXAMPLES,
    KUBE_VERSION,
    PEERING_CRD_FILE,
    ROOT,
    cr_jsonschema,
    crd,
    load_documents,
    sync_script,
    version_schema,
    walk,
)

SCHEMA = version_schema(crd())
VALIDATOR = jsonschema.Draft4Validator(cr_jsonschema(SCHEMA))

# Nodes a structural schema cannot type, each documented in the CRD's header.
UNTYPED = {
    "spec.paramGrid",
    "spec.cv",
    "spec.scoring",
    "spec.refit",
    "spec.errorScore",
    "spec.resources.requests.*",
    "spec.resources.limits.*",
}
# Typed objects left open: free-form by nature.
OPEN_OBJECTS = {
    "spec.estimator.params",
    "spec.estimator.pipeline[].params",
    "spec.pod.affinity",
    "status.bestParams",
    "status.kopf",
}

STATUS_FIELDS = {
    "phase",
    "message",
    "conditions",
    "observedGeneration",
    "shards",
    "tasks",
    "progress",
    "eta",
    "startTime",
    "completionTime",
    "bestParams",
    "bestScore",
    "refitMetric",
    "resultsUri",
    "reportUri",
    "jobName",
    "reducerJobName",
    # Also written by operator/status.py.
    "nFailedFits",
    "summaryUri",
}


def _errors(document: dict[str, Any]) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=p.name) for p in (PEERING_CRD_FILE,)] + ["gridsearch"]
)
def test_crds_pass_the_kubernetes_schema_strictly(path):
    """Both CRD files are valid apiextensions.k8s.io/v1 objects, no extra keys."""
    documents = [crd()] if path == "gridsearch" else load_documents(path)
    for document in documents:
        kubernetes_validate.validate(document, KUBE_VERSION, strict=True)


def test_names_scope_and_version():
    """Group, kind, plural, short name and version are the documented API."""
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "gridsearches.kubegrid.io"
    assert (spec["group"], spec["scope"]) == ("kubegrid.io", "Namespaced")
    assert spec["names"]["kind"] == "GridSearch"
    assert spec["names"]["plural"] == "gridsearches"
    assert spec["names"]["shortNames"] == ["gs"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (
        "v1alpha1",
        True,
        True,
    )
    assert f"{spec['group']}/{version['name']}" == specs.API_VERSION
    assert version["subresources"] == {"status": {}}


def test_schema_is_structural():
    """Every node is typed unless documented as a union; no type in junctors."""
    for path, node in walk(SCHEMA):
        preserve = node.get("x-kubernetes-preserve-unknown-fields")
        if "type" not in node:
            assert path in UNTYPED, f"{path} has no type"
            assert preserve, f"{path}: an untyped node must preserve unknown fields"
        elif preserve:
            assert path in OPEN_OBJECTS, f"{path} is left open without a reason"
        assert not ("properties" in node and "additionalProperties" in node), path
        for junctor in ("oneOf", "anyOf", "allOf", "not"):
            branches = node.get(junctor, [])
            for branch in branches if isinstance(branches, list) else [branches]:
                assert set(branch) <= {"required"}, f"{path}.{junctor}: {branch}"
    untyped = {p for p, n in walk(SCHEMA) if "type" not in n}
    assert untyped == UNTYPED


def _unwrap(annotation: Any) -> tuple[list[Any], list[Any]]:
    """(non-None union members, constraint metadata) of a field annotation."""
    members, constraints = [], []
    pending = [annotation]
    while pending:
        item = pending.pop(0)
        origin = typing.get_origin(item)
        if origin is typing.Annotated:
            base, *extra = typing.get_args(item)
            for meta in extra:
                constraints += getattr(meta, "metadata", [meta])
            pending.append(base)
        elif origin in (typing.Union, types.UnionType):
            pending += [a for a in typing.get_args(item) if a is not type(None)]
        elif item is not type(None):
            members.append(item)
    return members, constraints


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _check_field(model_field: Any, node: dict[str, Any], path: str) -> None:
    members, constraints = _unwrap(model_field.annotation)
    constraints += model_field.metadata
    if len(members) > 1:
        assert path in UNTYPED, f"{path} is a union in the model; keep it untyped"
        return
    (kind,) = members
    origin = typing.get_origin(kind)
    if isinstance(kind, type) and issubclass(kind, pydantic.BaseModel):
        assert node["type"] == "object", path
        _check_model(kind, node, path)
    elif origin is typing.Literal:
        assert node["type"] == "string", path
        assert set(node["enum"]) == set(typing.get_args(kind)), path
    elif origin is list:
        assert node["type"] == "array", path
        (item,) = typing.get_args(kind)
        if isinstance(item, type) and issubclass(item, pydantic.BaseModel):
            _check_model(item, node["items"], f"{path}[]")
    elif origin is dict or kind is dict:
        assert node["type"] == "object", path
    else:
        assert node["type"] == _SCALARS[kind], path
    for constraint in constraints:
        if isinstance(constraint, annotated_types.Ge):
            assert node["minimum"] == constraint.ge, path
            assert not node.get("exclusiveMinimum"), path
        elif isinstance(constraint, annotated_types.Gt):
            assert (node["minimum"], node["exclusiveMinimum"]) == (constraint.gt, True)
        elif isinstance(constraint, annotated_types.Lt):
            assert (node["maximum"], node["exclusiveMaximum"]) == (constraint.lt, True)
        elif isinstance(constraint, annotated_types.MinLen):
            assert node["minLength"] == constraint.min_length, path
        elif isinstance(constraint, annotated_types.MaxLen):
            assert node["maxLength"] == constraint.max_length, path


def _check_model(model: type[pydantic.BaseModel], node: dict[str, Any], path: str):
    properties = node["properties"]
    aliases = {}
    for name, field in model.model_fields.items():
        aliases[field.alias or name] = field
    assert set(properties) == set(aliases), f"{path}: fields differ"
    required = {alias for alias, field in aliases.items() if field.is_required()}
    assert set(node.get("required", [])) == required, f"{path}: required differ"
    for alias, field in aliases.items():
        child = properties[alias]
        _check_field(field, child, f"{path}.{alias}")
        if "default" in child:
            assert child["default"] == field.get_default(call_default_factory=True)


def test_spec_schema_mirrors_the_model_field_by_field():
    """Names, types, enums, bounds, required and defaults agree with spec.py."""
    _check_model(specs.GridSearchSpec, SCHEMA["properties"]["spec"], "spec")


def test_metadata_name_follows_the_model():
    """Child objects are named after the search, so the name is a DNS label."""
    name = SCHEMA["properties"]["metadata"]["properties"]["name"]
    field = specs.Metadata.model_fields["name"]
    assert name["maxLength"] == next(
        m.max_length for m in field.metadata if isinstance(m, annotated_types.MaxLen)
    )
    assert name["pattern"] == specs._DNS_LABEL.pattern


def test_status_has_the_fields_the_operator_writes():
    """The status names are a contract with operator/: all present, phases fixed."""
    status = SCHEMA["properties"]["status"]["properties"]
    assert set(status) >= STATUS_FIELDS
    assert set(status) - STATUS_FIELDS == {"kopf"}
    assert status["phase"]["enum"] == [
        "Pending",
        "Running",
        "Reducing",
        "Succeeded",
        "Failed",
    ]
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert set(status["shards"]["properties"]) == {
        "total",
        "succeeded",
        "failed",
        "active",
    }
    assert set(status["tasks"]["properties"]) == {"total", "done"}


def test_printer_columns_point_at_schema_fields():
    """kubectl get gs shows phase, progress, best score, ETA and age."""
    (version,) = crd()["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert {"Phase", "Progress", "Best", "ETA", "Age"} <= set(columns)
    status = SCHEMA["properties"]["status"]["properties"]
    for name, path in columns.items():
        if path.startswith(".status."):
            assert path.removeprefix(".status.") in status, name


def test_cel_rules_freeze_every_spec_field_but_suspend():
    """Each typed field has its own rule; a whole-spec rule covers the unions."""
    spec = SCHEMA["properties"]["spec"]
    rules = [rule["rule"] for rule in spec["x-kubernetes-validations"]]
    guarded = {
        name
        for name in spec["properties"]
        if any(f"self.{name} == oldSelf.{name}" in rule for rule in rules)
    }
    unions = {p.removeprefix("spec.") for p in UNTYPED if p.count(".") == 1}
    assert guarded | unions | {"suspend"} == set(spec["properties"])
    assert not guarded & unions, "CEL cannot see untyped fields: such a rule fails"
    assert "suspend" not in guarded
    assert any("self == oldSelf" in rule and "suspend" in rule for rule in rules)
    assert "immutable" in SCHEMA["description"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_the_crd_and_the_model(path):
    """Every example passes the CRD's schema and kubegrid.spec.parse."""
    (document,) = [d for d in load_documents(path) if d.get("kind") == "GridSearch"]
    assert _errors(document) == []
    specs.parse(document)


def test_examples_cover_the_cluster_and_union_forms():
    """The examples exercise s3 + secretRef, pipelines, random and multimetric."""
    documents = [load_documents(p)[0]["spec"] for p in EXAMPLES]
    assert any(d.get("storage", {}).get("secretRef") for d in documents)
    assert any(d["output"]["uri"].startswith("s3://") for d in documents)
    assert any("pipeline" in d["estimator"] for d in documents)
    assert any(d.get("search", {}).get("type") == "random" for d in documents)
    assert any(isinstance(d.get("scoring"), dict) for d in documents)
    assert any(isinstance(d.get("cv"), dict) for d in documents)
    assert any(isinstance(d["paramGrid"], list) for d in documents)


def _example() -> dict[str, Any]:
    """A known-good manifest to break one field at a time."""
    return copy.deepcopy(load_documents(ROOT / "examples" / "digits-svc.yaml")[0])


def _set(document: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return document


BAD = {
    "parallelism is text": ("spec.parallelism", "four"),
    "parallelism is negative": ("spec.parallelism", -1),
    "unknown spec field": ("spec.paralelism", 4),
    "unknown nested field": ("spec.dataset.column", "x"),
    "unknown search type": ("spec.search.type", "bayes"),
    "unknown dataset format": ("spec.dataset.format", "xlsx"),
    "empty dataset uri": ("spec.dataset.uri", ""),
    "holdout fraction of 1.5": ("spec.dataset.holdout", {"fraction": 1.5}),
    "holdout with two sources": (
        "spec.dataset.holdout",
        {"fraction": 0.2, "uri": "s3://b/test.csv"},
    ),
    "class and pipeline": (
        "spec.estimator.pipeline",
        [{"name": "svc", "class": "sklearn.svm.SVC"}],
    ),
    "class is not a dotted path": ("spec.estimator.class", "SVC"),
    "shards and tasksPerShard": ("spec.sharding", {"shards": 2, "tasksPerShard": 5}),
    "negative ttl": ("spec.job.ttlSecondsAfterFinished", -5),
    "suspend is text": ("spec.suspend", "maybe"),
    "name with capitals": ("metadata.name", "Digits_SVC"),
}


@pytest.mark.parametrize("field, value", BAD.values(), ids=list(BAD))
def test_bad_resources_fail_the_crd_and_the_model(field, value):
    """The API server and the spec model both reject each broken manifest."""
    document = _set(_example(), field, value)
    assert _errors(document), f"the CRD accepted {field}={value!r}"
    with pytest.raises(errors.UserError):
        specs.parse(document)


def test_missing_required_fields_fail_the_crd():
    """dataset, estimator, paramGrid and output are required."""
    for name in ("dataset", "estimator", "paramGrid", "output"):
        document = _example()
        del document["spec"][name]
        assert any(f"'{name}' is a required property" in e for e in _errors(document))


def test_chart_copies_of_the_crds_are_in_sync():
    """charts/kubegrid/crds/ holds exactly what scripts/sync-crds.py writes."""
    script = sync_script()
    assert script.differences() == [], "run scripts/sync-crds.py"
    assert set(script.expected_copies()) == {
        "kubegrid.io_gridsearches.yaml",
        "kopf.dev_peerings.yaml",
    }
