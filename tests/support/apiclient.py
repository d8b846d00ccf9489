"""A tiny JSON-over-HTTP Kubernetes client for the test harness itself.

Role: the job controller, the garbage collector and test helpers use it to
talk to the emulator in `kube.py`. It tags every request with
`kube.HARNESS_AGENT`, so request counts in tests only see the code under test.
It is deliberately not the official client: the harness needs raw dicts,
merge patches on `/status`, and no global configuration.
"""

from __future__ import annotations

import contextlib
from typing import Any

import requests

from tests.support.kube import HARNESS_AGENT


class NotFound(Exception):
    """The object or resource does not exist (HTTP 404)."""


def resource_path(resource: str, namespace: str | None, name: str | None = None) -> str:
    """The URL path of a collection or object, e.g. ``batch/v1/jobs`` in ns ``a``."""
    *group, version, plural = resource.split("/")
    base = f"/apis/{group[0]}/{version}" if group and group[0] else f"/api/{version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


class ApiClient:
    """Synchronous CRUD on raw dicts; thread-safe enough for one thread each."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = HARNESS_AGENT

    def close(self) -> None:
        self.session.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(
            method, self.base_url + path, timeout=self.timeout, **kwargs
        )
        if response.status_code == 404:
            raise NotFound(path)
        response.raise_for_status()
        return response.json() if response.content else None

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self._request("GET", resource_path(resource, namespace))["items"]

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self._request("GET", resource_path(resource, namespace, name))

    def create(
        self, resource: str, namespace: str | None, body: dict
    ) -> dict[str, Any]:
        return self._request("POST", resource_path(resource, namespace), json=body)

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        body: dict,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = resource_path(resource, namespace, name)
        if subresource:
            path += f"/{subresource}"
        headers = {"Content-Type": "application/merge-patch+json"}
        return self._request("PATCH", path, json=body, headers=headers)

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete an object; an already missing object is not an error."""
        with contextlib.suppress(NotFound):
            self._request("DELETE", resource_path(resource, namespace, name))
