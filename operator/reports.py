"""Reading what the pods said: the runner's reports and the kubelet's reasons.

Called by :mod:`kubegrid.operator.status` with the Pods of a Job. Each runner
pod leaves a short JSON report in its termination message (see
``kubegrid.cli._report``): on success the shard's counts and seconds
(``kubegrid.execution._report``) or the reducer's summary
(``kubegrid.cli._brief``), on failure ``{"error": ..., "kind": "user" |
"infra"}``. The kubelet
adds the container's exit code and reason (``OOMKilled``, ``Error``). This
module turns those into one message a user can act on, bounded in length,
because the status that carries it must stay small.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubegrid import errors

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"

# How many failed shards a message names before it summarises the rest, and
# how long any one pod's explanation may grow: together they keep a message
# well inside the status budget.
_NAMED_SHARDS = 3
_REASON_CHARS = 300


def job_pods(pods: Iterable[Mapping[str, Any]], job: str) -> list[Mapping[str, Any]]:
    """The pods of one Job, oldest first.

    The label selector the API call sent should already have done this; the
    filter repeats it because not every API server honours selectors.
    """
    mine = [
        pod
        for pod in pods
        if _labels(pod).get(JOB_NAME_LABEL, _labels(pod).get("job-name")) == job
    ]
    return sorted(mine, key=lambda pod: _terminated(pod).get("finishedAt") or "")


def parse_indexes(text: str | None) -> set[int]:
    """Kubernetes' interval notation to a set: "0-2,5" → {0, 1, 2, 5}."""
    indexes: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit():
            indexes.update(range(int(first), int(last or first) + 1))
    return indexes


def parse_report(message: str | None) -> dict[str, Any] | None:
    """The runner's JSON report, or None when the message holds something else."""
    if not message:
        return None
    try:
        report = json.loads(message)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def success_report(pods: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The report of the newest pod that exited 0."""
    for pod in reversed(list(pods)):
        terminated = _terminated(pod)
        if terminated and terminated.get("exitCode") == 0:
            return parse_report(terminated.get("message"))
    return None


def shard_reports(pods: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """The report of each shard index whose pod succeeded, newest pod winning.

    Only reports that carry the shard's task count and fit seconds count: a
    pod of another kubegrid version may write fewer keys, and is then left
    out rather than read as zero work.
    """
    found: dict[int, dict[str, Any]] = {}
    for pod in pods:
        terminated, index = _terminated(pod), _index(pod)
        if index is None or terminated.get("exitCode") != 0:
            continue
        report = parse_report(terminated.get("message")) or {}
        if _is_count(report.get("tasks")) and _is_seconds(report.get("fitSeconds")):
            found[index] = report  # pods come oldest first: the last one wins
    return found


def explain_pod(pod: Mapping[str, Any], memory_limit: str | None) -> str:
    """Why one pod failed, with the fix when kubegrid knows it."""
    terminated = _terminated(pod)
    reason = terminated.get("reason") or ""
    code = terminated.get("exitCode")
    report = parse_report(terminated.get("message"))
    if reason == "OOMKilled":
        now = f" (now {memory_limit})" if memory_limit else ""
        return (
            "ran out of memory (OOMKilled); raise spec.resources.limits.memory"
            f"{now} or cut the work per pod with more shards"
        )
    if report and "error" in report:
        kind = "user error" if report.get("kind") == "user" else "storage or infra"
        return _clip(f"{kind}: {report['error']}")
    if code == errors.EXIT_USER_ERROR:
        return _clip(f"user error: {_tail(terminated.get('message'))}")
    detail = _tail(terminated.get("message")) or reason or "no message"
    return _clip(f"exit code {code}: {detail}")


def explain_failed_shards(
    pods: Iterable[Mapping[str, Any]],
    failed: Iterable[int],
    memory_limit: str | None,
) -> str:
    """One sentence per failed shard, naming it; the rest summarised."""
    latest = _latest_failure_per_index(pods)
    indexes = sorted(set(failed))
    parts = []
    for index in indexes[:_NAMED_SHARDS]:
        pod = latest.get(index)
        why = explain_pod(pod, memory_limit) if pod else "its pod is gone"
        parts.append(f"shard {index} failed: {why}")
    if len(indexes) > _NAMED_SHARDS:
        parts.append(f"and {len(indexes) - _NAMED_SHARDS} more shards failed")
    return "; ".join(parts)


def _latest_failure_per_index(
    pods: Iterable[Mapping[str, Any]],
) -> dict[int, Mapping[str, Any]]:
    latest: dict[int, Mapping[str, Any]] = {}
    for pod in pods:
        terminated = _terminated(pod)
        index = _index(pod)
        if index is not None and terminated and terminated.get("exitCode") != 0:
            latest[index] = pod  # pods come oldest first: the last one wins
    return latest


def _index(pod: Mapping[str, Any]) -> int | None:
    meta = pod.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(INDEX_KEY) or _labels(pod).get(
        INDEX_KEY
    )
    return int(value) if value is not None and str(value).isdigit() else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return {}


def _tail(message: str | None) -> str:
    # With FallbackToLogsOnError the message is the log's end; its last line
    # is usually the runner's "error: ..." line.
    lines = [line for line in (message or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _clip(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"
