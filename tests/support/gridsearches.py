"""GridSearches as the tests create them: checked against the CRD's schema first.

Role: every test that creates a GridSearch through the emulator goes through
`create()` (or `check()` for a body it sends itself). The emulator, like
kmock, accepts any body, while an API server refuses one its CRD's schema
rejects; checking here keeps a test from feeding the operator a manifest no
cluster would let through, and from passing only because of that.

The schema is the CRD's own openAPIV3Schema translated as the chart tests do
(`tests.chart.helpers.cr_jsonschema`: closed objects, nullable), checked with
Draft 4, the JSON Schema dialect OpenAPI v3.0 builds on (there
`exclusiveMinimum` is a boolean beside `minimum`). The CRD's CEL rules
(`x-kubernetes-validations`, the immutable spec) are not evaluated.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

from tests.chart.helpers import cr_jsonschema, crd, version_schema
from tests.support import manifests
from tests.support.kube import GRIDSEARCH, Kube


@functools.cache
def _validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(cr_jsonschema(version_schema(crd())))


def check(body: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if the API server would refuse `body`."""
    _validator().validate(body)


def create(
    kube: Kube, name: str, spec: dict[str, Any], namespace: str = "default"
) -> dict[str, Any]:
    """Create a GridSearch once its manifest passed `check()`; return it."""
    body = manifests.grid_search(name, spec, namespace)
    check(body)
    client = kube.client()
    try:
        return client.create(GRIDSEARCH, namespace, body)
    finally:
        client.close()
