"""A stand-in for the Job controller, the kubelet and the garbage collector.

Role: `fixtures.job_controller` starts one per test against the `kube.Kube`
emulator. It polls batch/v1 Jobs over HTTP and runs every attempt of every
index as a local subprocess (see `pods.materialise` for how a container
becomes a process), then PATCHes `/status` of the Job the way Kubernetes
does (`jobstate.JobState` holds the semantics). It can also create a Pod
object per attempt, with the labels, ownerReference and terminated
container state an operator reads to explain a failure.

Conventions a test relies on:

* an attempt that dies of SIGKILL the harness did not send is reported as
  ``OOMKilled`` with exit code 137, like the kernel OOM killer; `oom_kill()`
  produces one on purpose;
* attempts killed for `suspend: true` are not failures; a resume re-runs the
  unfinished indexes only;
* `hold()` lets a Job's first attempts run and stops (SIGSTOP) every later
  one as it starts, `freeze()` stops one running attempt, and `release()`
  lets them go on (SIGCONT): a stopped pod stays active but cannot finish,
  so a test can act at a known point of a run instead of racing it;
* the container's `terminationMessagePath` becomes a per-attempt local file;
  what the process wrote there (or, with `FallbackToLogsOnError`, the log's
  tail after a failure) becomes the Pod's `state.terminated.message`;
* logs (stdout and stderr together, like ``kubectl logs``) are files under
  `workdir/logs/<namespace>/<job>/<index>-<attempt>.log`;
* `stop()` SIGKILLs every process group it started and reaps it.

The controller polls instead of watching: kmock replays every object on each
watch anyway and never times a watch out, so polling is as cheap and simpler
to stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

from tests.support import pods
from tests.support.apiclient import ApiClient, NotFound
from tests.support.jobstate import JobState, now_iso
from tests.support.kube import Kube, iter_owner_uids

logger = logging.getLogger(__name__)

JOBS = "batch/v1/jobs"
PODS = "v1/pods"

# Kinds whose orphans the GC removes: what kubegrid's operator creates.
GC_RESOURCES = (JOBS, PODS, "v1/configmaps", "v1/secrets")

# Exit code of a process killed by SIGKILL, as a container runtime reports it.
SIGKILL_EXIT = 128 + signal.SIGKILL


@dataclasses.dataclass
class Attempt:
    """One local process standing for one Pod of one index."""

    index: int
    number: int  # 0 for the first run of this index
    pod_name: str
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path
    killed_for: str | None = None  # why the harness killed it, if it did
    frozen: bool = False  # stopped by hold() or freeze() until release()
    # The local file standing for the container's terminationMessagePath,
    # and its terminationMessagePolicy (File or FallbackToLogsOnError).
    message_path: pathlib.Path | None = None
    message_policy: str = "File"


@dataclasses.dataclass
class JobRun:
    """A Job the controller is driving: its state plus its live processes."""

    namespace: str
    name: str
    uid: str
    state: JobState
    job: dict[str, Any]
    active: dict[int, Attempt] = dataclasses.field(default_factory=dict)
    last_write: float = 0.0


class JobController:
    """Plays kube-controller-manager (Job + GC) and the kubelet for tests.

    Args:
        kube: the started emulator.
        extra_env: variables every process gets, overriding the container's
            (e.g. ``AWS_ENDPOINT_URL``, ``PATH``).
        command_rewriter: maps the container argv to a local one, see
            `pods.rewrite_first`.
        create_pods: also create v1 Pod objects per attempt.
        retry_delay: seconds before a failed index runs again (upstream
            backs off from 10 s; tests want none).
        poll_interval: seconds between polls; status PATCHes are batched
            per Job to at most one per `status_interval`, except final ones.
    """

    def __init__(
        self,
        kube: Kube,
        *,
        extra_env: Mapping[str, str] | None = None,
        command_rewriter: pods.CommandRewriter | None = None,
        base_env: Mapping[str, str] | None = None,
        create_pods: bool = True,
        garbage_collect: bool = True,
        retry_delay: float = 0.0,
        poll_interval: float = 0.05,
        status_interval: float = 0.1,
        gc_interval: float = 0.3,
        workdir: pathlib.Path | None = None,
    ) -> None:
        self.kube = kube
        self.extra_env = dict(extra_env or {})
        self.command_rewriter = command_rewriter
        self.base_env = dict(base_env) if base_env is not None else pods.host_env()
        self.create_pods = create_pods
        self.garbage_collect = garbage_collect
        self.retry_delay = retry_delay
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.gc_interval = gc_interval
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="jobctl-")
        self.workdir = workdir or pathlib.Path(self._tmp.name)  # type: ignore[union-attr]
        self.runs: dict[str, JobRun] = {}
        self.errors: list[BaseException] = []  # harness failures, for assertions
        self._api: ApiClient | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards `runs` against test-thread readers
        # (namespace, job) -> how many attempts may run before the rest freeze.
        self._holds: dict[tuple[str, str], int] = {}
        self._last_gc = 0.0

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> JobController:
        self._api = ApiClient(self.kube.url)
        self._thread = threading.Thread(
            target=self._loop, name="job-controller", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling, then kill and reap every process (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            for run in self.runs.values():
                self._kill_all(run, "harness-stopped", update_pods=False)
        if self._api is not None:
            self._api.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> JobController:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # keep playing; the test sees `errors`
                logger.exception("job controller tick failed")
                self.errors.append(exc)
            self._stop.wait(self.poll_interval)

    # -- one poll ------------------------------------------------------------

    def _tick(self) -> None:
        assert self._api is not None
        jobs = self._api.list(JOBS)
        with self._lock:
            seen = set()
            for job in jobs:
                meta = job["metadata"]
                if meta.get("deletionTimestamp"):
                    continue  # treated as gone: its processes die below
                seen.add(meta["uid"])
                run = self.runs.get(meta["uid"])
                if run is None:
                    run = self.runs[meta["uid"]] = JobRun(
                        meta["namespace"], meta["name"], meta["uid"], JobState(job), job
                    )
                run.job, run.state.spec = job, job.get("spec") or {}
                self._step(run)
            for uid in set(self.runs) - seen:
                self._kill_all(self.runs[uid], "job-deleted", update_pods=False)
        if self.garbage_collect and time.monotonic() - self._last_gc > self.gc_interval:
            self._collect_garbage()
            self._last_gc = time.monotonic()

    def _step(self, run: JobRun) -> None:
        """Advance one Job: reap, suspend/resume, fail/succeed, start, write status."""
        state = run.state
        self._reap(run)
        if state.finished:
            return

        # Suspension kills without counting failures; resuming restarts the clock.
        if state.suspended:
            self._suspend(run)
        else:
            self._resume(run)
            state.check_deadline()
            if state.failure:
                self._kill_all(run, "job-failing", update_pods=True)
            state.check_completion(len(run.active))
            state.finalise(len(run.active))
            for index in state.to_start(set(run.active), time.monotonic()):
                self._start(run, index)
        self._write_status(run)

    def _suspend(self, run: JobRun) -> None:
        if run.active:
            self._kill_all(run, "suspended", update_pods=True)
        if not run.state.has_condition("Suspended"):
            run.state.set_condition(
                "Suspended", "True", "JobSuspended", "Job suspended"
            )
        run.state.start_time = run.state.started_at = None

    def _resume(self, run: JobRun) -> None:
        state = run.state
        if state.has_condition("Suspended"):
            state.set_condition("Suspended", "False", "JobResumed", "Job resumed")
        if state.started_at is None:
            state.mark_started()

    # -- processes -------------------------------------------------------------

    def _start(self, run: JobRun, index: int) -> None:
        assert self._api is not None
        number = run.state.starts[index]
        pod = self._pod_object(run, index)
        scratch = self.workdir / "pods" / run.namespace / pod["metadata"]["name"]
        log_path = self._log_path(run.namespace, run.name, index, number)
        try:
            launch = pods.materialise(
                pod,
                self._api,
                scratch,
                base_env=self.base_env,
                injected_env=self._injected_env(run, index),
                extra_env=self.extra_env,
                command_rewriter=self.command_rewriter,
            )
        except pods.PodStartError as exc:
            # A kubelet keeps such a pod in ContainerCreating: retry next poll.
            logger.warning(
                "job %s/%s index %d cannot start: %s",
                run.namespace,
                run.name,
                index,
                exc,
            )
            return
        container = pod["spec"]["containers"][0]
        message_path = _redirect_termination_message(container, launch, scratch)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                launch.argv,
                env=launch.env,
                cwd=launch.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group we can kill whole
            )
        run.state.started(index)
        attempt = run.active[index] = Attempt(
            index,
            number,
            pod["metadata"]["name"],
            process,
            log_path,
            message_path=message_path,
            message_policy=container.get("terminationMessagePolicy") or "File",
        )
        allowed = self._holds.get((run.namespace, run.name))
        if allowed is not None and sum(run.state.starts.values()) > allowed:
            _signal_group(process, signal.SIGSTOP)
            attempt.frozen = True
        if self.create_pods:
            self._create_pod(run, pod)

    @staticmethod
    def _injected_env(run: JobRun, index: int) -> dict[str, str]:
        # Upstream adds this variable to the pod template of Indexed Jobs.
        return {"JOB_COMPLETION_INDEX": str(index)} if run.state.indexed else {}

    def _reap(self, run: JobRun) -> None:
        for index, attempt in list(run.active.items()):
            returncode = attempt.process.poll()
            if returncode is None:
                continue
            del run.active[index]
            exit_code, reason = self._describe_exit(attempt, returncode)
            if attempt.killed_for in (None, "oom"):
                run.state.record_exit(
                    index, exit_code, attempt.pod_name, self.retry_delay
                )
            elif attempt.killed_for != "suspended":
                run.state.record_killed()
            if self.create_pods:
                self._finish_pod(run, attempt, exit_code, reason)

    @staticmethod
    def _describe_exit(attempt: Attempt, returncode: int) -> tuple[int, str]:
        """Exit code and container reason as the kubelet would report them."""
        if returncode == 0:
            return 0, "Completed"
        if returncode < 0:
            exit_code = 128 - returncode
            # A SIGKILL nobody in the harness sent stands for the OOM killer.
            if returncode == -signal.SIGKILL and attempt.killed_for in (None, "oom"):
                return exit_code, "OOMKilled"
            return exit_code, "Error"
        return returncode, "Error"

    def _kill_all(self, run: JobRun, why: str, update_pods: bool) -> None:
        """SIGKILL every active attempt of `run` and reap it synchronously."""
        for attempt in run.active.values():
            attempt.killed_for = attempt.killed_for or why
            _kill_group(attempt.process)
        if update_pods:
            self._reap(run)
        else:
            run.active.clear()

    # -- status and pods ---------------------------------------------------------

    def _write_status(self, run: JobRun) -> None:
        assert self._api is not None
        patch = run.state.status_patch(len(run.active))
        if not patch:
            return
        # Batch routine changes; conditions (the milestones) go out at once.
        urgent = "conditions" in patch
        if not urgent and time.monotonic() - run.last_write < self.status_interval:
            return
        try:
            self._api.patch(JOBS, run.namespace, run.name, {"status": patch}, "status")
        except NotFound:
            return  # deleted meanwhile; the next poll forgets it
        run.state.written.update(patch)
        run.state.written = {
            k: v for k, v in run.state.written.items() if v is not None
        }
        run.last_write = time.monotonic()

    def _pod_object(self, run: JobRun, index: int) -> dict[str, Any]:
        template = run.job["spec"].get("template") or {}
        meta = template.get("metadata") or {}
        suffix = secrets.token_hex(3)[:5]
        name = (
            f"{run.name}-{index}-{suffix}"
            if run.state.indexed
            else f"{run.name}-{suffix}"
        )
        labels = {
            **(meta.get("labels") or {}),
            "batch.kubernetes.io/job-name": run.name,
            "job-name": run.name,
            "batch.kubernetes.io/controller-uid": run.uid,
            "controller-uid": run.uid,
        }
        annotations = dict(meta.get("annotations") or {})
        if run.state.indexed:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": run.name,
            "uid": run.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": run.namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [owner],
            },
            "spec": {**(template.get("spec") or {}), "nodeName": "kmock-node"},
        }

    def _create_pod(self, run: JobRun, pod: dict[str, Any]) -> None:
        assert self._api is not None
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        # name, image, imageID, ready and restartCount are required by the
        # `kubernetes` client's models: without them, reading the pod fails.
        running = {
            "phase": "Running",
            "startTime": now_iso(),
            "containerStatuses": [
                {
                    "name": container.get("name", "main"),
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now_iso()}},
                }
            ],
        }
        self._api.create(PODS, run.namespace, pod)
        self._api.patch(PODS, run.namespace, name, {"status": running}, "status")

    def _finish_pod(
        self, run: JobRun, attempt: Attempt, exit_code: int, reason: str
    ) -> None:
        assert self._api is not None
        # Upstream deletes the pods of a suspended Job rather than failing them.
        if attempt.killed_for == "suspended":
            self._api.delete(PODS, run.namespace, attempt.pod_name)
            return
        try:
            pod = self._api.get(PODS, run.namespace, attempt.pod_name)
        except NotFound:
            return
        started = pod.get("status", {}).get("startTime")
        terminated = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_iso(),
        }
        message = _termination_message(attempt, exit_code)
        if message:
            terminated["message"] = message
        statuses = pod.get("status", {}).get("containerStatuses") or [{"name": "main"}]
        statuses = [
            {**statuses[0], "ready": False, "state": {"terminated": terminated}}
        ]
        phase = "Succeeded" if exit_code == 0 else "Failed"
        body = {"status": {"phase": phase, "containerStatuses": statuses}}
        self._api.patch(PODS, run.namespace, attempt.pod_name, body, "status")

    # -- garbage collection ------------------------------------------------------

    def _collect_garbage(self) -> None:
        """Delete objects all of whose owners are gone, like the upstream GC."""
        assert self._api is not None
        dependents = [
            (resource, obj)
            for resource in GC_RESOURCES
            for obj in self._api.list(resource)
            if list(iter_owner_uids(obj))
        ]
        # Listed dependents first, uids second: an owner always predates its
        # dependents, so a dependent listed above never misses a live owner.
        alive = self.kube.uids()
        for resource, obj in dependents:
            if not alive.intersection(iter_owner_uids(obj)):
                meta = obj["metadata"]
                logger.info(
                    "GC: deleting %s %s/%s",
                    resource,
                    meta.get("namespace"),
                    meta["name"],
                )
                self._api.delete(resource, meta.get("namespace"), meta["name"])

    # -- for assertions and fault injection ------------------------------------------

    def _log_path(
        self, namespace: str, job: str, index: int, attempt: int
    ) -> pathlib.Path:
        return self.workdir / "logs" / namespace / job / f"{index}-{attempt}.log"

    def logs(self, namespace: str, job: str, index: int = 0, attempt: int = -1) -> str:
        """The output of one attempt of one index; the last attempt by default."""
        paths = sorted(
            (self.workdir / "logs" / namespace / job).glob(f"{index}-*.log"),
            key=lambda p: int(p.stem.split("-")[1]),
        )
        if not paths:
            raise FileNotFoundError(f"no logs for {namespace}/{job} index {index}")
        return paths[attempt].read_text(errors="replace")

    def starts(self, namespace: str, job: str) -> dict[int, int]:
        """How many times each index (or NonIndexed slot) was started."""
        with self._lock:
            # The newest run wins when a Job was deleted and created again.
            for run in reversed(list(self.runs.values())):
                if (run.namespace, run.name) == (namespace, job):
                    return dict(run.state.starts)
        return {}

    def oom_kill(self, namespace: str, job: str, index: int) -> bool:
        """SIGKILL an index's running process; it is reported as OOMKilled.

        Returns False if that index has no running process right now.
        """
        with self._lock:
            for run in self.runs.values():
                attempt = run.active.get(index)
                if (run.namespace, run.name) == (
                    namespace,
                    job,
                ) and attempt is not None:
                    attempt.killed_for = "oom"
                    _kill_group(attempt.process, wait=False)
                    return True
        return False

    def hold(self, namespace: str, job: str, after: int = 0) -> None:
        """Let the Job's first `after` attempts run; freeze later ones on start.

        The Job need not exist yet. A frozen attempt counts as an active pod.
        """
        with self._lock:
            self._holds[namespace, job] = after

    def freeze(self, namespace: str, job: str, index: int) -> bool:
        """SIGSTOP an index's running attempt; False if it has none right now."""
        with self._lock:
            for run in self._runs_of(namespace, job):
                attempt = run.active.get(index)
                if attempt is not None:
                    _signal_group(attempt.process, signal.SIGSTOP)
                    attempt.frozen = True
                    return True
        return False

    def release(self, namespace: str, job: str) -> None:
        """Drop the Job's hold and let every frozen attempt of it go on."""
        with self._lock:
            self._holds.pop((namespace, job), None)
            for run in self._runs_of(namespace, job):
                for attempt in run.active.values():
                    if attempt.frozen:
                        _signal_group(attempt.process, signal.SIGCONT)
                        attempt.frozen = False

    def _runs_of(self, namespace: str, job: str) -> list[JobRun]:
        return [
            r for r in self.runs.values() if (r.namespace, r.name) == (namespace, job)
        ]

    def wait_finished(
        self, namespace: str, job: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until the Job has a Complete or Failed condition; return it."""

        def finished(obj: dict[str, Any]) -> bool:
            conditions = (obj.get("status") or {}).get("conditions") or []
            return any(
                c["type"] in ("Complete", "Failed") and c["status"] == "True"
                for c in conditions
            )

        return self.kube.wait_for(JOBS, namespace, job, finished, timeout=timeout)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal a process's whole group: the runner's forked workers too."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signum)


def _kill_group(process: subprocess.Popen[bytes], wait: bool = True) -> None:
    """SIGKILL a process's whole group: children of the runner die with it."""
    _signal_group(process, signal.SIGKILL)
    if wait:
        process.wait()


# The kubelet keeps at most this much of a termination message file, and with
# FallbackToLogsOnError at most this much (and 80 lines) of the log instead.
_MESSAGE_LIMIT = 4096
_LOG_FALLBACK_LIMIT = 2048
_LOG_FALLBACK_LINES = 80
DEFAULT_MESSAGE_PATH = "/dev/termination-log"


def _redirect_termination_message(
    container: dict[str, Any], launch: pods.Launch, scratch: pathlib.Path
) -> pathlib.Path:
    """Point the container's terminationMessagePath at a per-attempt file.

    The kubelet mounts a fresh file there and copies what the container wrote
    into the Pod status; locally, every mention of that path in argv and env
    becomes a file in the attempt's scratch directory, never the host's /dev.
    """
    in_pod = container.get("terminationMessagePath") or DEFAULT_MESSAGE_PATH
    local = scratch / "termination-log"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(b"")
    launch.argv = [arg.replace(in_pod, str(local)) for arg in launch.argv]
    launch.env = {k: v.replace(in_pod, str(local)) for k, v in launch.env.items()}
    return local


def _termination_message(attempt: Attempt, exit_code: int) -> str:
    """What the kubelet would put in `state.terminated.message`."""
    message = ""
    if attempt.message_path is not None and attempt.message_path.exists():
        data = attempt.message_path.read_bytes()[:_MESSAGE_LIMIT]
        message = data.decode(errors="replace")
    if (
        not message
        and exit_code != 0
        and attempt.message_policy == ("FallbackToLogsOnError")
    ):
        lines = attempt.log_path.read_bytes().splitlines()[-_LOG_FALLBACK_LINES:]
        tail = b"\n".join(lines)[-_LOG_FALLBACK_LIMIT:]
        message = tail.decode(errors="replace")
    return message
