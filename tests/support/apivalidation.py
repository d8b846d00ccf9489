"""What a real API server refuses when a Job is created, for the emulator.

Role: `kube.Emulator` calls `check_job()` on every Job it is asked to create.
kmock stores any body it gets; the API server first decodes the body and
then validates it, and code that builds Jobs must meet the same refusals in
the tests as on a cluster. Checked here, with upstream's wording (apimachinery
and pkg/apis/core/validation) so that code reading the answers is tested
against what it will really read:

* a container resource quantity that does not parse: 400 BadRequest, since
  decoding fails before validation starts;
* 422 Invalid, one cause per field, for a container resource name that is
  neither standard nor qualified, a request above its limit, a label or
  nodeSelector value that is not a label value, and a priorityClassName or
  serviceAccountName that is not a DNS subdomain.

Anything else upstream validates is accepted unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

# Upstream's quantity grammar; `[0-9]`, not `\d`, which also takes other scripts'
# digits. Suffixes: binary SI, a decimal exponent, or decimal SI.
_QUANTITY = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[eE][+-]?[0-9]+|[numkMGTPE])?"
)
# The expression upstream quotes in its decoding error (looser than its parser).
_QUANTITY_HINT = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_BINARY = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_EXPONENTS = (-9, -6, -3, 3, 6, 9, 12, 15, 18)
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(_BINARY)},
    **{s: Decimal(10) ** e for s, e in zip("numkMGTPE", _EXPONENTS, strict=True)},
}

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric "
    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    f"validation is '{_LABEL_VALUE.pattern}')"
)
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_DNS_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'example.com', regex used for validation is "
    f"'{_DNS_SUBDOMAIN.pattern}')"
)
_STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An API error answer: HTTP code, Status reason, message and details."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None

    def status(self) -> dict[str, Any]:
        """The body upstream sends: a v1 Status."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def check_job(job: Mapping[str, Any]) -> Refusal | None:
    """The API server's answer to creating ``job`` if it refuses it, else None."""
    containers = _pod_spec(job).get("containers") or []
    for container in containers:
        for amounts in _resource_maps(container):
            if any(_quantity(v) is None for v in amounts.values()):
                message = (
                    'Job in version "v1" cannot be handled as a Job: quantities '
                    f"must match the regular expression '{_QUANTITY_HINT}'"
                )
                return Refusal(400, "BadRequest", message)
    causes = list(_invalid_fields(job))
    if not causes:
        return None
    name = (job.get("metadata") or {}).get("name", "")
    listed = [f"{field}: {message}" for field, message in causes]
    summary = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    details = {
        "name": name,
        "group": "batch",
        "kind": "Job",
        "causes": [
            {"reason": "FieldValueInvalid", "message": message, "field": field}
            for field, message in causes
        ],
    }
    return Refusal(422, "Invalid", f'Job.batch "{name}" is invalid: {summary}', details)


def _invalid_fields(job: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field path, message) for each invalid field, in upstream's order."""
    yield from _labels("metadata.labels", (job.get("metadata") or {}).get("labels"))
    template = (job.get("spec") or {}).get("template") or {}
    yield from _labels(
        "spec.template.metadata.labels", (template.get("metadata") or {}).get("labels")
    )
    pod = _pod_spec(job)
    for i, container in enumerate(pod.get("containers") or []):
        path = f"spec.template.spec.containers[{i}].resources"
        yield from _resources(path, container.get("resources") or {})
    yield from _labels("spec.template.spec.nodeSelector", pod.get("nodeSelector"))
    for key in ("priorityClassName", "serviceAccountName"):
        value = pod.get(key)
        if value and not _is_dns_subdomain(value):
            yield f"spec.template.spec.{key}", _invalid(value, _DNS_SUBDOMAIN_MESSAGE)


def _labels(path: str, labels: Mapping[str, Any] | None) -> Iterator[tuple[str, str]]:
    for value in (labels or {}).values():
        text = str(value)
        if len(text) > 63:
            yield path, _invalid(text, "must be no more than 63 characters")
        elif not _LABEL_VALUE.fullmatch(text):
            yield path, _invalid(text, _LABEL_VALUE_MESSAGE)


def _resources(path: str, resources: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    for kind, amounts in (("limits", limits), ("requests", requests)):
        for name in amounts:
            if not _is_container_resource(name):
                message = "must be a standard resource type or fully qualified"
                yield f"{path}.{kind}[{name}]", _invalid(name, message)
    for name, request in requests.items():
        wanted, allowed = _quantity(request), _quantity(limits.get(name))
        if wanted is not None and allowed is not None and wanted > allowed:
            message = (
                f"must be less than or equal to {name} limit of {_text(limits[name])}"
            )
            yield f"{path}.requests", _invalid(_text(request), message)


def _pod_spec(job: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((job.get("spec") or {}).get("template") or {}).get("spec") or {}


def _resource_maps(container: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    resources = container.get("resources") or {}
    return [resources.get("requests") or {}, resources.get("limits") or {}]


def _quantity(value: Any) -> Decimal | None:
    """The amount a quantity stands for; None if upstream cannot parse it."""
    if value is None or isinstance(value, bool):
        return None
    # A JSON number is parsed from its literal; a string is trimmed first.
    text = value.strip() if isinstance(value, str) else json.dumps(value)
    if not _QUANTITY.fullmatch(text):
        return None
    match = re.fullmatch(r"(.*?)([KMGTPE]i|[numkMGTPE])?", text)
    assert match is not None  # the pattern above admits every quantity
    number, suffix = match.groups()
    return Decimal(number) * (_SUFFIXES[suffix] if suffix else 1)


def _is_container_resource(name: str) -> bool:
    # Extended resources (nvidia.com/gpu) are qualified names; hugepages-2Mi
    # and the like are standard.
    return name in _STANDARD_CONTAINER_RESOURCES or (
        name.startswith("hugepages-") or "/" in name
    )


def _is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(value))


def _invalid(value: str, detail: str) -> str:
    return f'Invalid value: "{value}": {detail}'


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else json.dumps(value)
