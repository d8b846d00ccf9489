"""The batch/v1 Job controller's bookkeeping for one Job, with no I/O.

Role: `jobcontroller.JobController` owns one `JobState` per Job uid. It tells
the state which attempts ended with which exit code, asks it which indexes to
start next, and writes `status()` back to the emulator. Everything about
Kubernetes Job *semantics* lives here, so it can be read against the upstream
documentation in one place:

* `completionMode: Indexed` with `completions` indexes, or NonIndexed slots;
* `parallelism`; `backoffLimit` (NonIndexed and Indexed without per-index
  limits); `backoffLimitPerIndex` and `maxFailedIndexes`;
* `podFailurePolicy` rules on exit codes with FailJob / FailIndex / Ignore /
  Count (`onPodConditions` never matches: the harness has no disruptions);
* `activeDeadlineSeconds` from `status.startTime`, which a resume resets;
* conditions in the order of Kubernetes >= 1.31: `SuccessCriteriaMet` then
  `Complete`; `FailureTarget` then `Failed`; `Suspended` True/False.
"""

from __future__ import annotations

import collections
import datetime
import time
from collections.abc import Iterable
from typing import Any

# Upstream defaults (pkg/apis/batch): backoffLimit 6, parallelism and completions 1.
DEFAULT_BACKOFF_LIMIT = 6

MESSAGES = {
    "CompletionsReached": "Reached expected number of succeeded pods",
    "BackoffLimitExceeded": "Job has reached the specified backoff limit",
    "FailedIndexes": "Job has failed indexes",
    "MaxFailedIndexesExceeded": (
        "Job has exceeded the specified maximal number of failed indexes"
    ),
    "DeadlineExceeded": "Job was active longer than specified deadline",
}


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compress_indexes(indexes: Iterable[int]) -> str:
    """Kubernetes' interval notation: {0,1,2,3,5} -> "0-3,5"."""
    ranges: list[list[int]] = []
    for index in sorted(set(indexes)):
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def parse_indexes(text: str | None) -> set[int]:
    """The inverse of `compress_indexes`; empty or None gives an empty set."""
    result: set[int] = set()
    for part in (text or "").split(","):
        if part:
            first, _, last = part.partition("-")
            result.update(range(int(first), int(last or first) + 1))
    return result


class JobState:
    """What the Job controller knows about one Job between two polls."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.spec: dict[str, Any] = job.get("spec") or {}
        self.succeeded: set[int] = set()  # indexes (or slots for NonIndexed)
        self.failed_indexes: set[int] = set()
        self.failures: collections.Counter[int] = collections.Counter()
        self.failed_pods = 0
        self.starts: collections.Counter[int] = collections.Counter()
        self.retry_at: dict[int, float] = {}
        self.failure: tuple[str, str] | None = None  # (reason, message)
        self.conditions: list[dict[str, Any]] = []
        self.start_time: str | None = None
        self.started_at: float | None = None  # monotonic twin of start_time
        self.completion_time: str | None = None
        self.written: dict[str, Any] = {}  # the last status the API accepted
        self._adopt(job.get("status") or {})

    def _adopt(self, status: dict[str, Any]) -> None:
        # A restarted harness must not re-run what a previous one finished.
        self.succeeded = parse_indexes(status.get("completedIndexes"))
        self.failed_indexes = parse_indexes(status.get("failedIndexes"))
        self.conditions = list(status.get("conditions") or [])
        self.failed_pods = int(status.get("failed") or 0)
        self.start_time = status.get("startTime")
        self.written = dict(status)

    # -- spec accessors --------------------------------------------------------

    @property
    def indexed(self) -> bool:
        return self.spec.get("completionMode") == "Indexed"

    @property
    def completions(self) -> int:
        return int(self.spec.get("completions") or 1)

    @property
    def parallelism(self) -> int:
        value = self.spec.get("parallelism")
        return 1 if value is None else int(value)

    @property
    def suspended(self) -> bool:
        return bool(self.spec.get("suspend"))

    @property
    def per_index_limit(self) -> int | None:
        value = self.spec.get("backoffLimitPerIndex")
        return None if value is None or not self.indexed else int(value)

    @property
    def finished(self) -> bool:
        return self.has_condition("Complete") or self.has_condition("Failed")

    def has_condition(self, kind: str, written: bool = False) -> bool:
        source = (self.written.get("conditions") or []) if written else self.conditions
        return any(c["type"] == kind and c["status"] == "True" for c in source)

    # -- scheduling --------------------------------------------------------

    def to_start(self, active: set[int], now: float) -> list[int]:
        """Indexes (or NonIndexed slot numbers) to start now, within parallelism."""
        if self.finished or self.failure or self.suspended:
            return []
        room = self.parallelism - len(active)
        if self.indexed:
            done = self.succeeded | self.failed_indexes | active
            waiting = [i for i in range(self.completions) if i not in done]
            ready = [i for i in waiting if self.retry_at.get(i, 0) <= now]
            return ready[: max(room, 0)]

        # NonIndexed: pods are interchangeable; never run more than still needed.
        needed = self.completions - len(self.succeeded) - len(active)
        first = max([*self.succeeded, *active, *self.starts, -1]) + 1
        return list(range(first, first + max(min(room, needed), 0)))

    def started(self, index: int) -> None:
        self.starts[index] += 1
        if self.start_time is None:
            self.mark_started()

    def mark_started(self) -> None:
        self.start_time = now_iso()
        self.started_at = time.monotonic()

    # -- outcomes ----------------------------------------------------------

    def record_exit(
        self, index: int, exit_code: int, pod_name: str, retry_delay: float
    ) -> None:
        """Apply one finished attempt: success, retry, failed index or failed Job."""
        if exit_code == 0:
            self.succeeded.add(index if self.indexed else len(self.succeeded))
            return
        action = self._policy_action(exit_code)
        if action == "Ignore":
            return  # not counted anywhere; the index simply runs again
        self.failed_pods += 1
        if action == "FailJob":
            message = (
                f"Container for pod {pod_name} failed with exit code {exit_code} "
                f"matching FailJob rule at index {index}"
            )
            self.fail("PodFailurePolicy", message)
        elif self.per_index_limit is not None:
            self._count_index_failure(index, action == "FailIndex", retry_delay)
        elif self.failed_pods > int(
            self.spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
        ):
            self.fail("BackoffLimitExceeded")

    def record_killed(self) -> None:
        """An attempt killed while the Job fails: counted, no policy applied."""
        self.failed_pods += 1

    def _count_index_failure(
        self, index: int, fail_now: bool, retry_delay: float
    ) -> None:
        self.failures[index] += 1
        limit = self.per_index_limit or 0
        if fail_now or self.failures[index] > limit:
            self.failed_indexes.add(index)
        else:
            self.retry_at[index] = time.monotonic() + retry_delay
        max_failed = self.spec.get("maxFailedIndexes")
        if max_failed is not None and len(self.failed_indexes) > int(max_failed):
            self.fail("MaxFailedIndexesExceeded")

    def _policy_action(self, exit_code: int) -> str:
        """The action of the first podFailurePolicy rule matching `exit_code`."""
        rules = (self.spec.get("podFailurePolicy") or {}).get("rules") or []
        for rule in rules:
            on_codes = rule.get("onExitCodes")
            if not on_codes:
                continue  # onPodConditions: no disruptions happen here
            listed = exit_code in on_codes.get("values", [])
            if listed == (on_codes.get("operator", "In") == "In"):
                action = rule["action"]
                # FailIndex is only valid with per-index limits; upstream
                # rejects the Job otherwise, the harness just counts it.
                if action == "FailIndex" and self.per_index_limit is None:
                    return "Count"
                return action
        return "Count"

    def fail(self, reason: str, message: str | None = None) -> None:
        """Decide the Job failed; the first reason wins, as upstream."""
        if self.failure is None and not self.finished:
            self.failure = (reason, message or MESSAGES.get(reason, reason))
            self.set_condition("FailureTarget", "True", *self.failure)

    def check_deadline(self) -> None:
        deadline = self.spec.get("activeDeadlineSeconds")
        if deadline is None or self.started_at is None:
            return
        if time.monotonic() - self.started_at > float(deadline):
            self.fail("DeadlineExceeded")

    def check_completion(self, active: int) -> None:
        """Set success or FailedIndexes once every index has an outcome."""
        if self.failure or self.finished or active:
            return
        if len(self.succeeded) >= self.completions:
            if not self.has_condition("SuccessCriteriaMet"):
                self.set_condition("SuccessCriteriaMet", "True", "CompletionsReached")
        elif (
            self.indexed
            and len(self.succeeded | self.failed_indexes) >= self.completions
        ):
            self.fail("FailedIndexes")

    def finalise(self, active: int) -> None:
        """Turn a *written* interim condition into the final one, as upstream does."""
        if active or self.finished:
            return
        if self.failure and self.has_condition("FailureTarget", written=True):
            self.set_condition("Failed", "True", *self.failure)
        elif self.has_condition("SuccessCriteriaMet", written=True):
            self.set_condition("Complete", "True", "CompletionsReached")
            self.completion_time = now_iso()

    def set_condition(
        self, kind: str, status: str, reason: str, message: str | None = None
    ) -> None:
        """Add or update a condition; lastTransitionTime moves only on a change."""
        stamp = now_iso()
        new = {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message or MESSAGES.get(reason, reason),
            "lastProbeTime": stamp,
            "lastTransitionTime": stamp,
        }
        for i, old in enumerate(self.conditions):
            if old["type"] == kind:
                if old["status"] == status:
                    new["lastTransitionTime"] = old["lastTransitionTime"]
                self.conditions[i] = new
                return
        self.conditions.append(new)

    # -- status ------------------------------------------------------------

    def status(self, active: int) -> dict[str, Any]:
        """The desired Job status; None means absent (upstream omits zeros)."""
        status: dict[str, Any] = {
            "startTime": self.start_time,
            "active": active or None,
            "ready": active,
            "succeeded": len(self.succeeded) or None,
            "failed": self.failed_pods or None,
            "completedIndexes": compress_indexes(self.succeeded) or None
            if self.indexed
            else None,
            "conditions": list(self.conditions) or None,
            "completionTime": self.completion_time,
        }
        # Upstream sets failedIndexes, even empty, whenever per-index limits are on.
        if self.per_index_limit is not None:
            status["failedIndexes"] = compress_indexes(self.failed_indexes)
        return status

    def status_patch(self, active: int) -> dict[str, Any]:
        """A merge patch from the last written status to the desired one."""
        desired = self.status(active)
        keys = set(desired) | set(self.written)
        return {
            k: desired.get(k) for k in keys if desired.get(k) != self.written.get(k)
        }
