"""What the operator does about each thing it sees, as short coordinating steps.

Called by the kopf handlers in :mod:`kubegrid.operator.handlers`, each of
which hands over one event. The steps read the world through
:mod:`kube`, decide with the pure :mod:`sizing`, :mod:`jobs` and
:mod:`status`, and write back through :mod:`kube` again.

Two rules make it safe to run any step twice, in any order, or after a
restart: children are created under deterministic names (a 409 means
"already done", see :func:`kube.ensure`), and the status is recomputed from
what the Jobs show, then patched only where it changed. Steps about one
search hold that search's lock, so two events never interleave their
read-modify-write of its status.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, cast

import kopf

from kubegrid import spec as specs
from kubegrid.errors import SpecError
from kubegrid.operator import jobs, kube, sizing, status

logger = logging.getLogger(__name__)

_locks: collections.defaultdict[tuple[str, str], threading.Lock] = (
    collections.defaultdict(threading.Lock)
)
_locks_guard = threading.Lock()


@contextlib.contextmanager
def serialised(namespace: str, name: str) -> Iterator[None]:
    """Hold the lock of one search (handlers run in a thread pool)."""
    with _locks_guard:
        lock = _locks[namespace, name]
    with lock:
        yield


def admit(search: Mapping[str, Any]) -> None:
    """A new search: validate it, record the plan, create its spec and Job."""
    namespace, name = _key(search)
    generation = int(search["metadata"].get("generation") or 1)
    current = dict(search.get("status") or {})
    now = status.utcnow()

    # A bad spec fails here, with the field named, before any child exists.
    try:
        manifest, plan = sizing.admit(name, namespace, search.get("spec") or {})
    except SpecError as exc:
        logger.info("rejected %s/%s: %s", namespace, name, exc)
        _write(search, current, status.rejected(exc, generation, now))
        return

    # The status first: the Job's first events then find the plan's totals.
    # A retried handler finds a status already moving and leaves it alone.
    if not current.get("phase"):
        job_name = jobs.shard_job_name(name)
        accepted = status.accepted(plan, job_name, generation, now)
        _write(search, current, accepted)
        current = accepted
    children = [
        jobs.config_map(name, namespace, dict(search["spec"])),
        jobs.shard_job(name, namespace, manifest.spec, plan.n_shards),
    ]
    kopf.adopt(children, owner=_as_body(search))

    # A child the API server refuses would be refused on every retry: the
    # spec passed a value through that only the server checks. Fail now.
    try:
        kube.ensure(children[0])
        job, created = kube.ensure(children[1])
    except kube.Refused as refused:
        logger.info("refused %s/%s: %s", namespace, name, refused)
        _write(search, current, _refusal_status(refused, generation))
        return
    if not created:
        _align_suspend(search, job)
    if created:
        message = (
            f"created Job {jobs.shard_job_name(name)}: {plan.n_candidates} "
            f"candidates in {plan.n_shards} shards"
        )
        kube.post_event(search, "Normal", "JobCreated", message)


def suspend(search: Mapping[str, Any], suspended: bool) -> None:
    """spec.suspend changed: suspend or resume whichever Jobs exist.

    A queued search (spec.queueName) is not resumed here: Kueue admits a Job
    by unsuspending it, so unsuspending it ourselves would start it past its
    queue. Its status is refreshed instead, to say it waits for the queue.
    """
    namespace, name = _key(search)
    queued = bool((search.get("spec") or {}).get("queueName"))
    for role, job in (
        ("shard", jobs.shard_job_name(name)),
        ("reduce", jobs.reducer_job_name(name)),
    ):
        if not suspended and queued:
            _requeued(namespace, name, role, job)
        elif kube.set_job_suspended(namespace, job, suspended):
            logger.info(
                "%s Job %s/%s", "suspended" if suspended else "resumed", namespace, job
            )


def _requeued(namespace: str, name: str, role: str, job_name: str) -> None:
    # Leaving the Job alone means no Job event follows: observe it now.
    job = kube.get_job(namespace, job_name)
    if job is not None:
        logger.info("left Job %s/%s to its Kueue queue", namespace, job_name)
        observe(namespace, name, role, job)


def _align_suspend(search: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """Make an existing Job's suspend follow spec.suspend.

    The field handler sees most changes, but one made while the operator was
    down, or while it re-handled the creation, reaches no handler: comparing
    states here catches it. A Job Kueue holds is Kueue's to release.
    """
    spec = search.get("spec") or {}
    wanted = bool(spec.get("suspend"))
    if not wanted and spec.get("queueName"):
        return
    if bool((job.get("spec") or {}).get("suspend")) != wanted:
        suspend(search, wanted)


def observe(namespace: str, name: str, role: str, job: Mapping[str, Any]) -> None:
    """A Job of the search changed: bring the search's status up to date."""
    search = kube.get_gridsearch(namespace, name)
    if search is None:
        return  # deleted; the garbage collector takes the children
    current = dict(search.get("status") or {})
    if status.is_terminal(current):
        return
    if not status.is_finished(job):
        _align_suspend(search, job)
    seen = _seen(search)

    # The pods are read only when their reports are needed (a shard just
    # completed, a finished reducer, failures to explain): calls stay O(shards).
    pods: list[dict[str, Any]] = []
    if status.needs_pods(current, job, role):
        pods = kube.list_job_pods(namespace, job["metadata"]["name"])
    if role == "reduce":
        new = status.observe_reducer(current, job, pods, seen)
    else:
        new = status.observe_shards(current, job, pods, seen)

    # Shards done: the reducer is created before the status says Reducing,
    # so a status that says so always has a reducer behind it.
    if current.get("phase") != status.REDUCING and new.get("phase") == status.REDUCING:
        try:
            _start_reducer(search, int(job["spec"]["completions"]))
        except kube.Refused as refused:
            logger.info("refused %s/%s: %s", namespace, name, refused)
            new = _refusal_status(refused, _seen(search).generation)
        else:
            new["reducerJobName"] = jobs.reducer_job_name(name)
    _write(search, current, new)


def _start_reducer(search: Mapping[str, Any], shards: int) -> None:
    namespace, name = _key(search)
    manifest = specs.parse(
        {
            "apiVersion": specs.API_VERSION,
            "kind": specs.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": dict(search.get("spec") or {}),
        }
    )
    reducer = jobs.reducer_job(name, namespace, manifest.spec, shards)
    kopf.adopt(reducer, owner=_as_body(search))
    kube.ensure(reducer)


# Where jobs.py puts the spec fields a Job carries unchecked by the operator:
# the API server names the Job's field, the user wrote the spec's.
_JOB_FIELDS = (
    ("spec.template.spec.containers[0].resources", "spec.resources"),
    ("spec.template.spec.containers[0].image", "spec.image"),
    ("spec.template.spec.nodeSelector", "spec.pod.nodeSelector"),
    ("spec.template.spec.tolerations", "spec.pod.tolerations"),
    ("spec.template.spec.affinity", "spec.pod.affinity"),
    ("spec.template.spec.priorityClassName", "spec.pod.priorityClassName"),
    ("spec.template.spec.serviceAccountName", "spec.pod.serviceAccountName"),
    ("spec.template.spec.imagePullSecrets", "spec.pod.imagePullSecrets"),
)


def _refusal_status(refused: kube.Refused, generation: int) -> status.Status:
    """Failed, naming the spec field the refusal is about and the server's words."""
    refusal = f"the API server refused {refused.kind} {refused.name}: {refused.reason}"
    if not refused.causes:
        # A body the server could not decode names no field (a quantity it
        # cannot parse, say): point at the fields passed through unchecked.
        message = (
            f"{refused.message} ({refusal}; check spec.resources, spec.pod, "
            "spec.image and spec.queueName)"
        )
        return status.rejected(SpecError("spec", message), generation, status.utcnow())
    described = [_describe_cause(field, text) for field, text in refused.causes]
    field, first = described[0]
    also = "".join(f"; also {f}: {t}" for f, t in described[1:])
    error = SpecError(field, f"{first}{also} ({refusal})")
    return status.rejected(error, generation, status.utcnow())


def _describe_cause(job_field: str, text: str) -> tuple[str, str]:
    """(spec field, message) for one cause; the Job's field if no spec field."""
    for prefix, spec_field in _JOB_FIELDS:
        rest = job_field[len(prefix) :]
        if job_field.startswith(prefix) and rest[:1] in ("", ".", "["):
            return spec_field + rest, text
    return "spec", f"{job_field}: {text}"


def _seen(search: Mapping[str, Any]) -> status.Seen:
    spec = search.get("spec") or {}
    limits = (spec.get("resources") or {}).get("limits") or {}
    memory = limits.get("memory")
    return status.Seen(
        generation=int(search["metadata"].get("generation") or 1),
        now=status.utcnow(),
        memory_limit=None if memory is None else str(memory),
        suspend_requested=bool(spec.get("suspend")),
        spec=spec,
    )


def _write(
    search: Mapping[str, Any], current: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    """Patch what changed, then post the milestones the change reached."""
    patch = status.changes(current, new)
    if not patch:
        return
    namespace, name = _key(search)
    if not kube.patch_gridsearch_status(namespace, name, patch):
        return
    for kind, reason, message in status.milestones(current, new):
        kube.post_event(search, kind, reason, message)
    if "phase" in patch:
        logger.info(
            "%s/%s is %s: %s", namespace, name, new["phase"], new.get("message")
        )


def _as_body(search: Mapping[str, Any]) -> kopf.Body:
    """kopf's view of a search, which kopf.adopt reads the owner from."""
    return kopf.Body(cast(kopf.RawBody, dict(search)))


def _key(search: Mapping[str, Any]) -> tuple[str, str]:
    meta = search["metadata"]
    return meta["namespace"], meta["name"]
