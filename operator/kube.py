"""Every Kubernetes API call the operator makes, and nothing else.

Called by :mod:`kubegrid.operator.reconcile` (and :mod:`handlers` at start-up).
Objects go in and come out as plain camelCase dicts, the shape the builders in
:mod:`jobs` produce and :mod:`status` reads; responses are decoded from JSON
directly rather than through the client's models, which both saves time and
keeps fields the models do not know.

The calls, which the chart's RBAC mirrors one for one::

    gridsearches         get; patch status; events create   (kopf: list, watch, patch)
    configmaps, jobs     create, get; jobs patch (suspend)   (kopf: jobs list, watch)
    pods                 list                                (read reports only)

Errors: a missing object is ``None`` or ``False``, a name taken is adoption
(see :func:`ensure`), a child the API server refuses as built (400, 422) is
:class:`Refused`, which no retry can cure; anything else is raised as the
client's ApiException, which kopf retries.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from kubegrid import spec as specs

logger = logging.getLogger(__name__)

GROUP, VERSION = specs.API_VERSION.split("/")
PLURAL = "gridsearches"

# PATCH bodies here are merge patches; the client would otherwise announce the
# first JSON type it knows, a JSON Patch, which the server reads as a list.
_MERGE = "application/merge-patch+json"

# Seconds any one call may take; kopf retries a handler that timed out.
_TIMEOUT = 30

# Answers to a create that the same body would get again on every retry: the
# server could not decode it (400) or its validation refused it (422).
_REFUSALS = (400, 422)


class Refused(Exception):
    """The API server refused to create a child object as it was built.

    ``reason`` is the Status reason (``Invalid``, ``BadRequest``), ``causes``
    the (field, message) pairs the server named, with fields as paths in the
    child (a 422 names them; a 400, for a body it could not decode, does not).
    """

    def __init__(
        self,
        kind: str,
        name: str,
        reason: str,
        message: str,
        causes: list[tuple[str, str]],
    ) -> None:
        super().__init__(f"{kind} {name} refused ({reason}): {message}")
        self.kind, self.name, self.reason = kind, name, reason
        self.message, self.causes = message, causes


def configure() -> None:
    """Load in-cluster credentials, else the local kubeconfig (development)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    _client.cache_clear()


@functools.cache
def _client() -> kubernetes.client.ApiClient:
    # One client, so one connection pool, shared by every handler thread.
    return kubernetes.client.ApiClient()


def _batch() -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(_client())


def _core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(_client())


def _custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(_client())


def ensure(body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a ConfigMap or Job; if its name is taken, return the existing one.

    Names are deterministic, so a 409 means an earlier attempt (a retried
    handler, a restarted operator) already created it. Returns the object
    and whether this call created it; raises :class:`Refused` if the server
    refuses the body itself.
    """
    kind, namespace = body["kind"], body["metadata"]["namespace"]
    try:
        created = _call(_creators()[kind], namespace, body=dict(body))
        logger.info("created %s %s/%s", kind, namespace, body["metadata"]["name"])
        return created, True
    except ApiException as exc:
        if exc.status in _REFUSALS:
            raise _refused(kind, body["metadata"]["name"], exc) from exc
        if exc.status != 409:
            raise
    existing = _get(kind, namespace, body["metadata"]["name"])
    if existing is None:  # deleted between the 409 and now: let kopf retry
        raise kopf.TemporaryError(
            f"{kind} {body['metadata']['name']} vanished", delay=1
        )
    return existing, False


def _refused(kind: str, name: str, exc: ApiException) -> Refused:
    """Read the server's Status body; a body that is not one still refuses."""
    try:
        answer = json.loads(exc.body or "")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    details = answer.get("details") or {}
    causes = [
        (str(cause.get("field") or ""), str(cause.get("message") or ""))
        for cause in details.get("causes") or []
        if isinstance(cause, dict)
    ]
    reason = str(answer.get("reason") or exc.reason or exc.status)
    message = str(answer.get("message") or exc.body or "")
    return Refused(kind, name, reason, message, causes)


def get_job(namespace: str, name: str) -> dict[str, Any] | None:
    return _get("Job", namespace, name)


def set_job_suspended(namespace: str, name: str, suspend: bool) -> bool:
    """Suspend or resume a Job; False if it does not exist."""
    body = {"spec": {"suspend": suspend}}
    try:
        _call(
            _batch().patch_namespaced_job,
            name,
            namespace,
            body=body,
            _content_type=_MERGE,
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def list_job_pods(namespace: str, job: str) -> list[dict[str, Any]]:
    """The Pods of one Job (the caller filters again: see reports.job_pods)."""
    listing = _call(
        _core().list_namespaced_pod,
        namespace,
        label_selector=f"batch.kubernetes.io/job-name={job}",
    )
    return list(listing.get("items") or [])


def get_gridsearch(namespace: str, name: str) -> dict[str, Any] | None:
    api = _custom()
    try:
        return _call(
            api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_gridsearch_status(
    namespace: str, name: str, patch: Mapping[str, Any]
) -> bool:
    """Merge ``patch`` into the status; False if the search is gone."""
    api = _custom()
    try:
        _call(
            api.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body={"status": dict(patch)},
            _content_type=_MERGE,
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def post_event(search: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    """A Kubernetes Event on the search (kopf posts it in the background)."""
    body = kopf.Body(cast(kopf.RawBody, dict(search)))
    kopf.event(body, type=kind, reason=reason, message=message)


def _get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _call(_readers()[kind], name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _creators() -> dict[str, Any]:
    return {
        "ConfigMap": _core().create_namespaced_config_map,
        "Job": _batch().create_namespaced_job,
    }


def _readers() -> dict[str, Any]:
    return {
        "ConfigMap": _core().read_namespaced_config_map,
        "Job": _batch().read_namespaced_job,
    }


def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the client and decode the raw JSON answer into dicts."""
    response = method(
        *args, _preload_content=False, _request_timeout=_TIMEOUT, **kwargs
    )
    data = response.data
    return json.loads(data) if data else {}
