"""A Kubernetes API emulator on a real HTTP port, for kopf and the `kubernetes` client.

Role: the cluster of the test suite. `fixtures.kube` starts one per test; the
job controller harness (`jobcontroller.py`), the kopf operator subprocess
(`operator_proc.py`) and test bodies all talk to it over HTTP.

It is kmock 0.8's `KubernetesEmulator` plus the project shim recorded in
/work/shared/TEST-INFRA.md, and a little more realism:

* `GET /api/v1/namespaces` no longer crashes kmock's path parser;
* create answers 201 and fills `metadata.namespace/uid/generation/
  creationTimestamp/resourceVersion`;
* every write bumps `resourceVersion`; a change outside `metadata` and
  `status` bumps `metadata.generation`, as the API server does;
* for resources with a `status` subresource, the main endpoint ignores
  `status` and `/status` ignores everything else, so code that writes status
  the wrong way fails here as it would on a cluster;
* a Job the API server would refuse is refused, 400 or 422 with upstream's
  Status body (`apivalidation` lists what is checked);
* the request log records each answer's HTTP status, so a test can count
  the objects really created, not only the attempts.

What it still does not do (kmock limits): label/field selectors are ignored,
there is no PUT, no optimistic concurrency (409 on a stale resourceVersion)
and no ownerReference garbage collection (`JobController` plays the GC).

The server runs in its own thread with its own event loop, so synchronous
test code may block freely on `kubernetes` client calls.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import dataclasses
import datetime
import itertools
import pathlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock._internal import dicts as kmock_dicts  # private: kmock is pinned to 0.8
from kmock._internal import parsing as kmock_parsing

from tests.support import apivalidation

# Requests sent with this User-Agent come from the harness itself (the job
# controller, the GC, test-side helpers); `Kube.count()` skips them by default
# so that a test counts only what the code under test asked for.
HARNESS_AGENT = "kubegrid-test-harness"

GRIDSEARCH = "kubegrid.io/v1alpha1/gridsearches"
JOBS = "batch/v1/jobs"

_original_parse_path = kmock_parsing.parse_path


def _parse_path(path: str) -> kmock_parsing.ParsedPath:
    """Parse a URL path, also for the namespace list that kmock 0.8 crashes on."""
    try:
        return _original_parse_path(path)
    except ValueError:
        parts = path.strip("/").split("/")
        if parts[-1] != "namespaces":
            raise
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        return kmock_parsing.ParsedPath(group, version, "namespaces", None, None, None)


# kmock resolves `parse_path` through the module at call time, so patching the
# module attribute is enough; it is idempotent across many Kube instances.
kmock_parsing.parse_path = _parse_path


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One API request as the emulator saw it, for counting in tests."""

    method: str
    path: str
    action: str | None  # list, watch, fetch, create, update, delete
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    user_agent: str
    at: float  # time.monotonic() on arrival
    status: int | None = None  # the HTTP answer; None while a watch streams


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body_name(data: Any) -> str | None:
    """A create's object name, which is in the body, not the URL."""
    return data.get("metadata", {}).get("name") if isinstance(data, dict) else None


def _generation_part(obj: dict[str, Any]) -> dict[str, Any]:
    """What `metadata.generation` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with API-server bookkeeping (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records: list[RequestRecord] = []
        self.rv_counter = itertools.count(1)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        at = self._record(request)
        try:
            response = await self._answer(request)
        except kmock.KubernetesError as exc:  # kmock renders it as a Status
            self._answered(at, exc.status)
            raise
        except Exception:
            self._answered(at, 500)
            raise
        self._answered(at, response.status)
        return response

    async def _answer(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None:
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                refusal = self._refusal(request)
                if refusal is not None:
                    return aiohttp.web.json_response(
                        refusal.status(), status=refusal.code
                    )
                self._prepare_create(request)
            elif request.action == kmock.action.UPDATE and request.data is not None:
                await self._prepare_update(request)
        response = await super()._handle(request)

        # kubernetes>=37 decodes a create's body only on 201, as a real server sends.
        if request.action == kmock.action.CREATE and response.status == 200:
            response.set_status(201)
        return response

    def _refusal(self, request: kmock.Request) -> apivalidation.Refusal | None:
        """Upstream's answer to a create it would refuse (Jobs only, see there)."""
        if request.resource != kmock.resource(JOBS):
            return None
        return apivalidation.check_job(request.data)

    def _answered(self, at: int, status: int) -> None:
        self.records[at] = dataclasses.replace(self.records[at], status=status)

    def _record(self, request: kmock.Request) -> int:
        """Log the request on arrival; return its place in the log."""
        raw = request._raw_request
        resource = request.resource
        self.records.append(
            RequestRecord(
                method=str(request.method.value if request.method else ""),
                path=raw.path if raw is not None else str(request.url.path),
                action=request.action.value.lower() if request.action else None,
                plural=getattr(resource, "plural", None),
                namespace=request.namespace,
                name=request.name or _body_name(request.data),
                subresource=request.subresource,
                user_agent=request.headers.get("User-Agent", ""),
                at=time.monotonic(),
            )
        )
        return len(self.records) - 1

    def _has_status_subresource(self, request: kmock.Request) -> bool:
        resource = request.resource
        return (
            resource is not None
            and resource in self.resources
            and "status" in self.resources[resource].subresources
        )

    def _prepare_create(self, request: kmock.Request) -> None:
        data: dict[str, Any] = request.data
        meta = data.setdefault("metadata", {})

        # Live watch events are filtered on the body's namespace, not the URL's.
        if request.namespace:
            meta.setdefault("namespace", request.namespace)
        # generateName is the server's to resolve (kopf names Events so).
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta["creationTimestamp"] = _now()
        meta["resourceVersion"] = str(next(self.rv_counter))

        # The API server drops status on create when status is a subresource.
        if self._has_status_subresource(request):
            data.pop("status", None)

    async def _prepare_update(self, request: kmock.Request) -> None:
        """Make a PATCH behave like the API server's before kmock applies it."""
        old = await self._current_object(request)
        if old is None:
            return  # kmock answers 404 itself
        if isinstance(request.data, list):
            self._prepare_json_patch(request, old)
        else:
            self._prepare_merge_patch(request, old)

    def _prepare_merge_patch(self, request: kmock.Request, old: dict[str, Any]) -> None:
        data: dict[str, Any] = request.data
        meta = data.setdefault("metadata", {})

        # A resourceVersion in the patch is a precondition, as upstream.
        expected = meta.pop("resourceVersion", None)
        if expected is not None and expected != old["metadata"].get("resourceVersion"):
            raise kmock.KubernetesError(409, "Conflict", "the object has been modified")

        # Mirror the status subresource contract: each endpoint owns its half.
        if self._has_status_subresource(request):
            if request.subresource == "status":
                kept = {"status": data["status"]} if "status" in data else {}
                data.clear()
                data.update(kept)
            else:
                data.pop("status", None)

        # Clients must not move server-owned fields; the server bumps them.
        meta = data.setdefault("metadata", {})
        for key in ("uid", "generation", "creationTimestamp"):
            meta.pop(key, None)
        meta.update(self._bumps(request, old, _apply(old, data)))

    def _prepare_json_patch(self, request: kmock.Request, old: dict[str, Any]) -> None:
        ops: list[dict[str, Any]] = request.data
        if self._has_status_subresource(request):
            to_status = request.subresource == "status"
            ops[:] = [
                op for op in ops if op["op"] == "test" or _is_status_op(op) == to_status
            ]

        # kopf guards its JSON patches with a resourceVersion `test` op; a
        # failed test is 422 upstream, which kopf expects in order to retry.
        try:
            new = jsonpatch.apply_patch(old, ops)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise kmock.KubernetesError(422, "Invalid", str(exc)) from exc
        for key, value in self._bumps(request, old, new).items():
            ops.append({"op": "add", "path": f"/metadata/{key}", "value": value})

    def _bumps(
        self, request: kmock.Request, old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        """The new resourceVersion, and generation if the spec-like part changed."""
        bumps: dict[str, Any] = {"resourceVersion": str(next(self.rv_counter))}
        if request.subresource != "status" and _generation_part(
            old
        ) != _generation_part(new):
            bumps["generation"] = int(old["metadata"].get("generation") or 1) + 1
        return bumps

    async def _current_object(self, request: kmock.Request) -> dict[str, Any] | None:
        if request.resource is None or request.name is None:
            return None
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                return None
            return copy.deepcopy(self.objects[key].raw)


def _apply(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The object after a merge patch (kmock's own semantics: null deletes)."""
    return dict(kmock_dicts.patch_dict(old, patch))


def _is_status_op(op: dict[str, Any]) -> bool:
    return op["path"] == "/status" or op["path"].startswith("/status/")


class _QuickStopServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's test server, but it does not wait a minute for open watches.

    kmock never ends a watch stream by itself, so a client left watching
    (kopf, a test) would hold the default 60 s graceful shutdown.
    """

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> Any:
        runner = await super()._make_runner(debug=debug, **kwargs)
        runner._shutdown_timeout = 0.5  # private, as aiohttp itself sets it
        return runner


class Kube:
    """The emulator running in a background thread, with sync accessors.

    Use as a context manager or call `start()`/`stop()`. Attributes once
    started: `url` (``http://127.0.0.1:<port>``), `kubeconfig` (a file path).
    """

    def __init__(self, workdir: pathlib.Path | None = None) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="kube-")
        self.workdir = workdir or pathlib.Path(self._tmp.name)  # type: ignore[union-attr]
        self.emulator = Emulator()
        self.url = ""
        self.kubeconfig = self.workdir / "kubeconfig.yaml"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Kube:
        """Start serving; return once the port is known and the kubeconfig written."""
        _declare_resources(self.emulator)
        self._thread = threading.Thread(
            target=self._run, name="kube-emulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._error is not None:
            raise RuntimeError("the kmock emulator did not start") from self._error
        self._seed()
        self._write_kubeconfig()
        return self

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Kube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start() if it happens early
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server_cls = _QuickStopServer
        async with (
            self.emulator,
            kmock.Server(self.emulator, server_cls=server_cls) as server,
        ):
            self.url = f"http://{server.host}:{server.port}"
            self._ready.set()
            await self._stopping.wait()

    def _seed(self) -> None:
        # kopf waits forever for a namespace object when not cluster-wide.
        self.put("v1/namespaces", None, "default", {"metadata": {"name": "default"}})

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "dummy"}}],
            "contexts": [
                {"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}
            ],
            "current-context": "kmock",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    # -- synchronous access to the store (no HTTP, not logged) ---------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the emulator's loop under its lock and return the result."""
        assert self._loop is not None, "Kube is not started"

        async def locked() -> Any:
            async with self.emulator._lock:
                return fn()

        return asyncio.run_coroutine_threadsafe(locked(), self._loop).result(timeout=10)

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Live objects of `resource` (e.g. ``batch/v1/jobs``), deep copies."""
        res = kmock.resource(resource)

        def pick() -> list[dict[str, Any]]:
            return [
                copy.deepcopy(obj.raw)
                for (r, ns, _), obj in self.emulator.objects.items()
                if r == res
                and not obj.deleted
                and (namespace is None or ns == namespace)
            ]

        return self._call(pick)

    def get(
        self, resource: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """One live object as a deep copy, or None if absent or deleted."""
        for obj in self.list(resource, namespace):
            if obj.get("metadata", {}).get("name") == name:
                return obj
        return None

    def history(
        self, resource: str, namespace: str | None, name: str
    ) -> builtins.list[dict | None]:
        """Every stored version of an object, None marking deletions."""
        key = (kmock.resource(resource), namespace, name)

        def pick() -> builtins.list[dict | None]:
            if key not in self.emulator.objects:
                return []
            versions = self.emulator.objects[key].history
            return [None if v is None else copy.deepcopy(v.raw) for v in versions]

        return self._call(pick)

    def put(self, resource: str, namespace: str | None, name: str, body: dict) -> None:
        """Store an object directly (no events, no bookkeeping): for seeding."""
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("name", name)
        if namespace:
            meta.setdefault("namespace", namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())

        def store() -> None:
            self.emulator.objects[kmock.resource(resource), namespace, name] = body

        self._call(store)

    def uids(self) -> set[str]:
        """The uids of all live objects of all resources (for the GC)."""

        def pick() -> set[str]:
            return {
                obj.raw.get("metadata", {}).get("uid")
                for obj in self.emulator.objects.values()
                if not obj.deleted
            } - {None}

        return self._call(pick)

    # -- the request log ----------------------------------------------------

    def mark(self) -> int:
        """A position in the request log; pass it as `since=` to count after it."""
        return len(self.emulator.records)

    def requests(
        self,
        *,
        since: int = 0,
        include_harness: bool = False,
        **match: Any,
    ) -> builtins.list[RequestRecord]:
        """Logged requests from `since`, filtered by equality on record fields.

        Example: ``kube.requests(method="PATCH", plural="gridsearches", name="gs1")``;
        ``status=201`` with ``action="create"`` counts objects really created.
        Harness traffic (see `HARNESS_AGENT`) is left out unless asked for.
        """
        records = self.emulator.records[since:]
        return [
            r
            for r in records
            if (include_harness or HARNESS_AGENT not in r.user_agent)
            and all(getattr(r, k) == v for k, v in match.items())
        ]

    def count(self, **kwargs: Any) -> int:
        """How many requests `requests(**kwargs)` would return."""
        return len(self.requests(**kwargs))

    # -- convenience ----------------------------------------------------------

    def client(self) -> Any:
        """A raw-dict `apiclient.ApiClient` tagged as harness traffic."""
        from tests.support.apiclient import ApiClient  # it imports this module

        return ApiClient(self.url)

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for this emulator, without global state."""
        import kubernetes  # late: importing it reads KUBECONFIG at import time

        return kubernetes.config.new_client_from_config(
            config_file=str(self.kubeconfig)
        )

    def wait_for(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda obj: True,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Poll until the object exists and satisfies `predicate`; return it."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self.get(resource, namespace, name)
            if last is not None and predicate(last):
                return last
            time.sleep(0.02)
        raise TimeoutError(f"{resource} {namespace}/{name} not as expected: {last!r}")


def _declare_resources(emulator: Emulator) -> None:
    """Builtin discovery plus the GridSearch CRD, as kopf needs both."""
    emulator.resources.load_bundled()
    emulator.resources[GRIDSEARCH] = kmock.ResourceInfo(
        kind="GridSearch",
        singular="gridsearch",
        shortnames={"gs"},
        namespaced=True,
        verbs={"list", "watch", "get", "create", "patch", "delete", "update"},
        subresources={"status"},
    )


def iter_owner_uids(obj: dict[str, Any]) -> Iterator[str]:
    """The uids an object's ownerReferences point to."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("uid"):
            yield ref["uid"]
