"""Pure status: from what the Jobs and Pods show to the GridSearch's status.

Called by :mod:`kubegrid.operator.handlers` on every event of a search's Jobs.
Each function takes the current status and an observation and returns the
whole new status; the handler patches only what changed. The status shape::

    phase               Pending | Running | Reducing | Succeeded | Failed
    message             one line for humans (names failed shards and the fix)
    observedGeneration  the spec generation this status describes
    conditions          Accepted, Running, Suspended, Complete, Failed
    shards              {total, succeeded, failed, active}
    tasks               {total, done}: tasks of the completed shards, cut as
                        the pods cut them; without total when the data
                        decides the splits (done then from the shards' reports)
    progress            "done/total" tasks (shards when the data decides)
    eta                 time left at the finished shards' fit rate, e.g. "3m10s"
    startTime, completionTime
    jobName, reducerJobName
    bestParams, bestScore, refitMetric, nFailedFits    once the reducer succeeded
    resultsUri, summaryUri, reportUri                  where its artifacts are

Phases only move forward through the stages Pending/Running → Reducing →
Succeeded/Failed (Pending and Running swap while a Job is suspended), so a
late or replayed event of the shard Job never undoes the reducer's result.
Everything is bounded: the status stays a few KiB whatever the grid size,
the full results living in object storage.
"""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubegrid.errors import SpecError
from kubegrid.operator import reports, sizing
from kubegrid.operator.jobs import KUEUE_QUEUE_LABEL

PENDING, RUNNING, REDUCING = "Pending", "Running", "Reducing"
SUCCEEDED, FAILED = "Succeeded", "Failed"
_STAGE = {PENDING: 0, RUNNING: 0, REDUCING: 1, SUCCEEDED: 2, FAILED: 2}

# Bounds that keep the status small (the CRD is told the same): a message,
# and the best parameters, which a user may make arbitrarily long.
_MESSAGE_CHARS = 1024
_BEST_PARAMS_CHARS = 2048

# What the status copies from the reducer's report (``kubegrid.cli._brief``),
# each under the same name the CRD declares.
_REDUCER_KEYS = (
    "bestParams",
    "bestScore",
    "refitMetric",
    "nFailedFits",
    "resultsUri",
    "summaryUri",
    "reportUri",
)

Status = dict[str, Any]
Milestone = tuple[str, str, str]  # (event type, reason, message)


@dataclass(frozen=True)
class Seen:
    """What an observation needs besides the Job: the search's side of it."""

    generation: int
    now: str
    memory_limit: str | None = None  # spec.resources.limits.memory, for advice
    suspend_requested: bool = False  # spec.suspend, to tell it from a queue
    spec: Mapping[str, Any] | None = None  # the stored spec, to plan the shards


def is_terminal(current: Mapping[str, Any]) -> bool:
    return _STAGE.get(current.get("phase") or PENDING, 0) == 2


def accepted(plan: sizing.Sizing, job_name: str, generation: int, now: str) -> Status:
    """The status of a valid search whose Job is about to be created."""
    conditions = set_condition(
        [], "Accepted", "True", "Valid", "the spec is valid", generation, now
    )
    tasks = None if plan.n_tasks is None else {"total": plan.n_tasks, "done": 0}
    return {
        "phase": PENDING,
        "message": plan.describe(),
        "observedGeneration": generation,
        "shards": {"total": plan.n_shards, "succeeded": 0, "failed": 0, "active": 0},
        "tasks": tasks,
        "progress": _progress(0, plan.n_tasks, 0, plan.n_shards),
        "jobName": job_name,
        "conditions": conditions,
    }


def rejected(error: SpecError, generation: int, now: str) -> Status:
    """The status of a spec that failed validation: Failed, naming the field."""
    message = _clip(str(error))
    conditions = set_condition(
        [], "Accepted", "False", "InvalidSpec", message, generation, now
    )
    conditions = set_condition(
        conditions, "Failed", "True", "InvalidSpec", message, generation, now
    )
    return {
        "phase": FAILED,
        "message": message,
        "observedGeneration": generation,
        "completionTime": now,
        "conditions": conditions,
    }


def observe_shards(
    current: Mapping[str, Any],
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    seen: Seen,
) -> Status:
    """The status after an event of the shard Job (pods: only once it failed)."""
    new = dict(current) | _shard_progress(current, job, pods, seen)
    if _STAGE.get(current.get("phase") or PENDING, 0) > 0:
        return new  # the shard stage is over: refresh counts, keep the phase
    failed = job_condition(job, "Failed")
    if failed is not None:
        failed_indexes = reports.parse_indexes(_status(job).get("failedIndexes"))
        shard_pods = reports.job_pods(pods, _name(job))
        why = reports.explain_failed_shards(
            shard_pods, failed_indexes, seen.memory_limit
        )
        reason = failed.get("reason") or "JobFailed"
        return _fail(new, _job_failure(reason, failed, why), reason, seen)
    if job_condition(job, "Complete") is not None:
        total = new["shards"]["total"]
        message = f"all {total} shards finished; merging their results"
        return _running(new, REDUCING, "Reducing", message, seen)
    if (job.get("spec") or {}).get("suspend"):
        return _suspended(new, job, seen)
    shards = new["shards"]
    if shards["active"] or shards["succeeded"] or shards["failed"]:
        message = f"{shards['active']} shards running, {shards['succeeded']} done"
        return _running(new, RUNNING, "ShardsRunning", message, seen)
    message = "waiting for the shard pods to start"
    if any(c.get("type") == "Suspended" for c in new.get("conditions") or []):
        resumed = ("Suspended", "False", "Resumed", message)
        new = new | {"conditions": _conditions(new, seen, resumed)}
    return new | {"phase": PENDING, "message": message}


def observe_reducer(
    current: Mapping[str, Any],
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    seen: Seen,
) -> Status:
    """The status after an event of the reducer Job (pods: once it finished)."""
    new = dict(current)
    if is_terminal(current):
        return new
    failed = job_condition(job, "Failed")
    if failed is not None:
        why = ""
        attempts = reports.job_pods(pods, _name(job))
        if attempts:
            why = "the reducer " + reports.explain_pod(attempts[-1], seen.memory_limit)
        reason = failed.get("reason") or "JobFailed"
        return _fail(new, _job_failure(reason, failed, why), reason, seen)
    if job_condition(job, "Complete") is not None:
        report = reports.success_report(reports.job_pods(pods, _name(job))) or {}
        return _succeed(new, report, seen)
    if (job.get("spec") or {}).get("suspend"):
        return _suspended(new | {"phase": REDUCING}, job, seen)
    message = "merging the shards' results"
    return _running(new, REDUCING, "Reducing", message, seen)


def needs_pods(current: Mapping[str, Any], job: Mapping[str, Any], role: str) -> bool:
    """Whether an event of ``job`` needs the reports its Pods hold.

    A failed Job's pods explain the failure, a finished reducer's carry the
    results, and a shard that has just completed tells the fit seconds the
    ETA is estimated from. Other events (a pod starting) need none, so a
    search lists its shard pods once per completed shard.
    """
    if job_condition(job, "Failed") is not None:
        return True
    if role == "reduce":
        return is_finished(job)
    return _succeeded(current) != len(_completed(job))


def milestones(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Milestone]:
    """Events worth a line in ``kubectl describe``: phase changes that matter."""
    before, after = old.get("phase"), new.get("phase")
    if before == after:
        return []
    message = str(new.get("message") or "")
    if after == REDUCING:
        return [("Normal", "ShardsDone", message)]
    if after == SUCCEEDED:
        return [("Normal", "ResultsReady", message)]
    if after == FAILED:
        return [("Warning", "Failed", message)]
    return []


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Status:
    """A merge patch turning ``old`` into ``new``.

    A key whose new value is None, or that ``new`` lacks, is deleted.
    """
    patch = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    kind: str,
    state: str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Conditions with ``kind`` set; the transition time moves only on a flip."""
    old = next((c for c in conditions if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == state else now
    condition = {
        "type": kind,
        "status": state,
        "reason": reason,
        "message": _clip(message),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    others = [dict(c) for c in conditions if c.get("type") != kind]
    return [*others, condition]


def job_condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The Job's condition ``kind`` if it is True."""
    for condition in _status(job).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def is_finished(job: Mapping[str, Any]) -> bool:
    return any(job_condition(job, kind) for kind in ("Complete", "Failed"))


def utcnow() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shard_progress(
    current: Mapping[str, Any],
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    seen: Seen,
) -> Status:
    """Counts of shards and tasks, the progress column and the ETA.

    Task counts come from the plan every pod computes; when the data decides
    the split count, from what the finished shards reported. What only the
    reports tell is read when a shard has just finished (the reconciler then
    lists the pods, see :func:`needs_pods`) and carried over until the next.
    """
    state = _status(job)
    total = _completions(job)
    completed = _completed(job)
    failed = reports.parse_indexes(state.get("failedIndexes"))
    plan = None
    if seen.spec is not None and total:
        plan = sizing.shard_plan(seen.spec, total)
    shares = plan.costs if plan is not None else sizing.planned_shares(total)
    shard_pods = reports.job_pods(pods, _name(job))
    finished = {
        i: report
        for i, report in reports.shard_reports(shard_pods).items()
        if i in completed
    }
    carried = _succeeded(current) == len(completed)

    n_tasks = (current.get("tasks") or {}).get("total")
    if plan is not None and plan.tasks is not None:
        n_tasks = sum(plan.tasks)
    done = _tasks_done(plan, completed, finished)
    if done is None and carried:
        done = (current.get("tasks") or {}).get("done")
    started = current.get("startTime") or state.get("startTime")
    work = _Work(shares, completed, finished, _parallelism(job))
    if finished or not carried:
        eta = _eta(work) or _wall_clock_eta(work, started, seen.now)
    else:
        eta = current.get("eta")
    return {
        "shards": {
            "total": total,
            "succeeded": len(completed),
            "failed": len(failed),
            "active": int(state.get("active") or 0),
        },
        "tasks": _tasks(n_tasks, done),
        "progress": _progress(done, n_tasks, len(completed), total),
        "startTime": started,
        "eta": eta if len(completed) < total else None,
    }


def _tasks_done(
    plan: sizing.ShardPlan | None,
    completed: set[int],
    finished: Mapping[int, Mapping[str, Any]],
) -> int | None:
    """Tasks of the completed shards; None when neither plan nor reports tell."""
    if plan is not None and plan.tasks is not None:
        return sum(plan.tasks[i] for i in completed)
    if completed <= finished.keys():
        return sum(int(finished[i]["tasks"]) for i in completed)
    return None


def _tasks(n_tasks: int | None, done: int | None) -> Status | None:
    tasks = {"total": n_tasks, "done": done}
    return {k: v for k, v in tasks.items() if v is not None} or None


@dataclass(frozen=True)
class _Work:
    """The shards seen as work: expected shares, which finished, what they said."""

    shares: Sequence[float]
    completed: set[int]
    finished: Mapping[int, Mapping[str, Any]]
    parallelism: int

    @property
    def left(self) -> list[float]:
        """The expected shares of the shards not yet completed."""
        return [c for i, c in enumerate(self.shares) if i not in self.completed]


def _eta(work: _Work) -> str | None:
    """Time left, from the fit seconds the finished shards reported.

    Each finished shard reports ``fitSeconds``, what its fits took, and the
    plan gives every shard i its share c_i of the search's expected cost
    (shards are cut by that cost, so their task counts differ). Then::

        rate      = sum(fitSeconds) / sum(c_i)   over the shards that reported
        remaining = rate * sum(c_j)              over the shards not completed
        slots     = min(parallelism, shards not completed) * workers
        eta       = max(remaining / slots, rate * max(c_j) / workers)

    ``parallelism`` is the Job's (pods at once) and ``workers`` the fit
    processes per pod the reports give (their ``budget``; 1 without one).
    The second term is the longest shard left, which one pod runs however
    many run at once. Running shards count as not started, so the estimate
    errs long by what they have done so far. None when no shard reported.
    """
    spent = sum(float(r["fitSeconds"]) for r in work.finished.values())
    planned = sum(work.shares[i] for i in work.finished)
    left = work.left
    if not work.finished or not left or planned <= 0:
        return None
    rate = spent / planned
    workers = _workers(work.finished.values())
    slots = min(work.parallelism, len(left)) * workers
    seconds = max(rate * sum(left) / slots, rate * max(left) / workers)
    return _duration(round(seconds))


def _wall_clock_eta(work: _Work, started: str | None, now: str) -> str | None:
    """Time left at the wall-clock pace of the finished share of the cost.

    The fallback when no finished shard's report can be read (its pod is
    gone): the time since the Job started already holds every cost the
    reports would tell, pod starts and parallelism included.
    """
    finished = sum(c for i, c in enumerate(work.shares) if i in work.completed)
    left = sum(work.left)
    if not started or finished <= 0 or left <= 0:
        return None
    elapsed = (_parse_time(now) - _parse_time(started)).total_seconds()
    return _duration(round(max(elapsed, 1.0) * left / finished))


def _workers(finished: Iterable[Mapping[str, Any]]) -> int:
    """Fit processes per pod, the median of what the shards reported."""
    counts = []
    for report in finished:
        workers = (report.get("budget") or {}).get("workers")
        if isinstance(workers, int) and workers >= 1:
            counts.append(workers)
    return int(statistics.median(counts)) if counts else 1


def _parallelism(job: Mapping[str, Any]) -> int:
    # A Job without spec.parallelism runs one pod at a time.
    return max(1, int((job.get("spec") or {}).get("parallelism") or 1))


def _completions(job: Mapping[str, Any]) -> int:
    return int((job.get("spec") or {}).get("completions") or 0)


def _completed(job: Mapping[str, Any]) -> set[int]:
    """The Job's completed indexes, within its completions."""
    indexes = reports.parse_indexes(_status(job).get("completedIndexes"))
    return {i for i in indexes if i < _completions(job)}


def _succeeded(current: Mapping[str, Any]) -> int | None:
    return (current.get("shards") or {}).get("succeeded")


def _progress(
    done: int | None, n_tasks: int | None, shards_done: int, shards: int
) -> str:
    if done is None or n_tasks is None:
        return f"{shards_done}/{shards} shards"
    return f"{done}/{n_tasks}"


def _running(new: Status, phase: str, reason: str, message: str, seen: Seen) -> Status:
    conditions = _conditions(new, seen, ("Running", "True", reason, message))
    if any(c["type"] == "Suspended" for c in conditions):
        resumed = ("Suspended", "False", "Resumed", "running again")
        conditions = _conditions({"conditions": conditions}, seen, resumed)
    if phase == REDUCING:
        new = new | {"eta": None}
    return new | {
        "phase": phase,
        "message": message,
        "observedGeneration": seen.generation,
        "conditions": conditions,
    }


def _suspended(new: Status, job: Mapping[str, Any], seen: Seen) -> Status:
    # A Kueue-managed Job waits suspended until its queue admits it; only a
    # suspend the user did not ask for is the queue's.
    labels = (job.get("metadata") or {}).get("labels") or {}
    if KUEUE_QUEUE_LABEL in labels and not seen.suspend_requested:
        reason, message = "Queued", "waiting for the Kueue queue to admit the Job"
    else:
        reason, message = (
            "Suspended",
            "suspended by spec.suspend; finished work is kept",
        )
    conditions = _conditions(
        new,
        seen,
        ("Suspended", "True", reason, message),
        ("Running", "False", reason, message),
    )
    phase = REDUCING if new.get("phase") == REDUCING else PENDING
    return new | {
        "phase": phase,
        "message": message,
        "observedGeneration": seen.generation,
        "conditions": conditions,
        "eta": None,
    }


def _conditions(
    new: Mapping[str, Any], seen: Seen, *changes: tuple[str, str, str, str]
) -> list[dict[str, Any]]:
    conditions: list[dict[str, Any]] = list(new.get("conditions") or [])
    for kind, state, reason, message in changes:
        conditions = set_condition(
            conditions, kind, state, reason, message, seen.generation, seen.now
        )
    return conditions


def _succeed(new: Status, report: Mapping[str, Any], seen: Seen) -> Status:
    best = {key: report.get(key) for key in _REDUCER_KEYS}
    message = "results ready"
    if best["bestScore"] is not None:
        message = f"best {best['refitMetric'] or 'score'} {best['bestScore']:.6g}"
    if report.get("nFailedFits"):
        message += f"; {report['nFailedFits']} fits failed (see summary.json)"
    if len(json.dumps(best["bestParams"], default=str)) > _BEST_PARAMS_CHARS:
        best["bestParams"] = None
        message += "; bestParams is too long for the status, see summary.json"
    if best["reportUri"]:
        message += f"; report in {best['reportUri']}"
    elif best["resultsUri"]:
        message += f"; results in {best['resultsUri']}"
    conditions = _conditions(
        new,
        seen,
        ("Running", "False", "Succeeded", message),
        ("Complete", "True", "Succeeded", message),
    )
    return (
        new
        | {k: v for k, v in best.items() if v is not None}
        | {
            "phase": SUCCEEDED,
            "message": _clip(message),
            "observedGeneration": seen.generation,
            "completionTime": seen.now,
            "conditions": conditions,
            "eta": None,
        }
    )


def _fail(new: Status, message: str, reason: str, seen: Seen) -> Status:
    conditions = _conditions(
        new,
        seen,
        ("Running", "False", reason, message),
        ("Failed", "True", reason, message),
    )
    return new | {
        "phase": FAILED,
        "message": _clip(message),
        "observedGeneration": seen.generation,
        "completionTime": seen.now,
        "conditions": conditions,
        "eta": None,
    }


def _job_failure(reason: str, condition: Mapping[str, Any], why: str) -> str:
    """The failure message: the pods' explanation first, the Job's reason after."""
    if reason == "DeadlineExceeded":
        return "the search ran longer than spec.job.timeoutSeconds and was stopped"
    return why or str(condition.get("message") or reason)


def _status(job: Mapping[str, Any]) -> Mapping[str, Any]:
    return job.get("status") or {}


def _name(job: Mapping[str, Any]) -> str:
    return str((job.get("metadata") or {}).get("name"))


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _duration(seconds: int) -> str:
    """3725 → '1h02m'; 190 → '3m10s'; 45 → '45s'."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
