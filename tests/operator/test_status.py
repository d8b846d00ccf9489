"""Pure status: phases, conditions, progress, ETA and failure messages."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jsonschema
import yaml

from kubegrid.errors import SpecError
from kubegrid.operator import sizing, status

CRD = (
    pathlib.Path(__file__).resolve().parents[2]
    / "crds"
    / "kubegrid.io_gridsearches.yaml"
)
T0 = "2026-12-03T10:00:00Z"
T1 = "2026-12-03T10:01:40Z"  # 100 s later


# 20 candidates × 5 folds = 100 tasks; C grows the cost, so shards differ.
SPEC: dict[str, Any] = {
    "dataset": {"uri": "s3://data/d.csv", "target": "y"},
    "estimator": {"class": "sklearn.svm.SVC"},
    "paramGrid": {"C": [10.0**e for e in range(-10, 10)]},
    "cv": 5,
    "output": {"uri": "s3://data/out"},
}


def seen(now: str = T1, **kwargs: Any) -> status.Seen:
    return status.Seen(generation=1, now=now, **{"spec": SPEC, **kwargs})


def shard_plan(shards: int = 10) -> sizing.ShardPlan:
    plan = sizing.shard_plan(SPEC, shards)
    assert plan is not None and plan.tasks is not None
    return plan


def shard_report(tasks: int, fit_seconds: float, workers: int = 1) -> str:
    return json.dumps(
        {"tasks": tasks, "fitSeconds": fit_seconds, "budget": {"workers": workers}}
    )


def accepted(n_tasks: int = 100, shards: int = 10) -> dict[str, Any]:
    plan = sizing.Sizing(n_candidates=n_tasks // 5, n_splits=5, n_shards=shards)
    return status.accepted(plan, "gs-shards", 1, T0)


def job(
    name: str = "gs-shards",
    completions: int = 10,
    conditions: tuple[tuple[str, str], ...] = (),
    suspend: bool = False,
    labels: dict[str, str] | None = None,
    **state: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"completions": completions, "suspend": suspend},
        "status": {
            "startTime": T0,
            **state,
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": r}
                for t, r in conditions
            ],
        },
    }


def pod(
    index: int,
    exit_code: int,
    reason: str,
    message: str = "",
    job_name: str = "gs-shards",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{job_name}-{index}-x",
            "labels": {"batch.kubernetes.io/job-name": job_name},
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": reason,
                            "message": message,
                            "finishedAt": T1,
                        }
                    }
                }
            ]
        },
    }


def condition(current: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in current.get("conditions", []) if c["type"] == kind), None)


def test_accepted_search_is_pending_with_its_plan() -> None:
    current = accepted()
    assert current["phase"] == "Pending"
    assert current["tasks"] == {"total": 100, "done": 0}
    assert current["progress"] == "0/100"
    assert condition(current, "Accepted")["status"] == "True"  # type: ignore[index]


def test_rejected_spec_fails_naming_the_field() -> None:
    current = status.rejected(SpecError("spec.scoring", "unknown scorer"), 3, T0)
    assert current["phase"] == "Failed"
    assert current["message"] == "spec.scoring: unknown scorer"
    failed = condition(current, "Failed")
    assert failed is not None
    assert (failed["status"], failed["reason"], failed["observedGeneration"]) == (
        "True",
        "InvalidSpec",
        3,
    )


def test_running_shards_report_tasks_done_and_an_eta() -> None:
    """4 of 10 shards done in 100 s, no report readable: the ETA is the wall
    clock's pace over the finished share of the expected cost."""
    plan = shard_plan()
    observed = job(active=2, completedIndexes="0-3", succeeded=4)
    current = status.observe_shards(accepted(), observed, [], seen())
    done = sum(plan.tasks[:4])  # type: ignore[index]
    assert 0 < done < 100
    assert current["phase"] == "Running"
    assert current["tasks"] == {"total": 100, "done": done}
    assert current["progress"] == f"{done}/100"
    assert current["shards"] == {"total": 10, "succeeded": 4, "failed": 0, "active": 2}
    left = sum(plan.costs[4:]) / sum(plan.costs[:4])
    assert current["eta"] == status._duration(round(100 * left))
    assert condition(current, "Running")["status"] == "True"  # type: ignore[index]


def test_eta_comes_from_the_fit_seconds_the_shards_reported() -> None:
    """Two shards reported 30 s of fits with 2 workers each: the rest of the
    expected cost goes at that rate over min(parallelism, shards left) pods."""
    plan = shard_plan()
    observed = job(active=2, completedIndexes="0-1", succeeded=2)
    observed["spec"]["parallelism"] = 3
    pods = [
        pod(0, 0, "Completed", shard_report(plan.tasks[0], 20.0, 2)),  # type: ignore[index]
        pod(1, 0, "Completed", shard_report(plan.tasks[1], 10.0, 2)),  # type: ignore[index]
    ]
    current = status.observe_shards(accepted(), observed, pods, seen())
    rate = 30.0 / (plan.costs[0] + plan.costs[1])
    left = plan.costs[2:]
    expected = max(rate * sum(left) / (3 * 2), rate * max(left) / 2)
    assert current["eta"] == status._duration(round(expected))
    # Without those reports the estimate falls back to the wall clock.
    fallback = status.observe_shards(accepted(), observed, [], seen())
    assert fallback["eta"] != current["eta"]


def test_no_eta_before_any_task_finished() -> None:
    current = status.observe_shards(accepted(), job(active=2), [], seen())
    assert current["phase"] == "Running"
    assert current.get("eta") is None


def test_completed_shards_move_the_search_to_reducing() -> None:
    observed = job(
        completedIndexes="0-9",
        succeeded=10,
        conditions=(("Complete", "CompletionsReached"),),
    )
    current = status.observe_shards(accepted(), observed, [], seen())
    assert current["phase"] == "Reducing"
    assert current["tasks"]["done"] == 100
    assert status.milestones(accepted(), current)[0][1] == "ShardsDone"


def test_failed_shards_are_named_with_their_reason() -> None:
    """The message names each failed shard and what to do about it."""
    report = json.dumps({"error": "dataset.target: no column 'label'", "kind": "user"})
    observed = job(
        completedIndexes="0-6",
        failedIndexes="7,9",
        conditions=(("Failed", "FailedIndexes"),),
    )
    pods = [pod(7, 2, "Error", report), pod(9, 137, "OOMKilled")]
    current = status.observe_shards(
        accepted(), observed, pods, seen(memory_limit="512Mi")
    )
    assert current["phase"] == "Failed"
    assert (
        "shard 7 failed: user error: dataset.target: no column 'label'"
        in (current["message"])
    )
    assert "shard 9 failed: ran out of memory (OOMKilled)" in current["message"]
    assert "raise spec.resources.limits.memory (now 512Mi)" in current["message"]
    assert condition(current, "Failed")["reason"] == "FailedIndexes"  # type: ignore[index]
    assert status.milestones(accepted(), current)[0][:2] == ("Warning", "Failed")


def test_many_failed_shards_keep_the_message_short() -> None:
    observed = job(
        completions=500,
        failedIndexes="0-499",
        conditions=(("Failed", "FailedIndexes"),),
    )
    pods = [pod(i, 1, "Error", "x" * 2000) for i in range(500)]
    current = status.observe_shards(accepted(shards=500), observed, pods, seen())
    assert "and 497 more shards failed" in current["message"]
    assert len(current["message"]) <= 1024


def test_a_timeout_says_which_setting_stopped_it() -> None:
    observed = job(conditions=(("Failed", "DeadlineExceeded"),))
    current = status.observe_shards(accepted(), observed, [], seen())
    assert "spec.job.timeoutSeconds" in current["message"]


def test_reducer_success_fills_in_the_best_candidate() -> None:
    reducing = {**accepted(), "phase": "Reducing"}
    report = {
        "bestParams": {"C": 10.0, "gamma": 0.001},
        "bestScore": 0.9722,
        "refitMetric": "score",
        "nFailedFits": 0,
        "resultsUri": "s3://b/out/cv_results.parquet",
    }
    observed = job("gs-reduce", 1, conditions=(("Complete", "CompletionsReached"),))
    pods = [pod(0, 0, "Completed", json.dumps(report), job_name="gs-reduce")]
    current = status.observe_reducer(reducing, observed, pods, seen())
    assert current["phase"] == "Succeeded"
    assert current["bestParams"] == {"C": 10.0, "gamma": 0.001}
    assert current["bestScore"] == 0.9722
    assert current["resultsUri"] == "s3://b/out/cv_results.parquet"
    assert condition(current, "Complete")["status"] == "True"  # type: ignore[index]
    assert condition(current, "Running")["status"] == "False"  # type: ignore[index]
    assert status.milestones(reducing, current)[0][1] == "ResultsReady"


def test_huge_best_params_stay_out_of_the_status() -> None:
    reducing = {**accepted(), "phase": "Reducing"}
    report = {"bestParams": {"vocabulary": ["w"] * 5000}, "bestScore": 0.5}
    observed = job("gs-reduce", 1, conditions=(("Complete", "CompletionsReached"),))
    pods = [pod(0, 0, "Completed", json.dumps(report), job_name="gs-reduce")]
    current = status.observe_reducer(reducing, observed, pods, seen())
    assert "bestParams" not in current
    assert len(json.dumps(current)) < 8 * 1024


def test_late_shard_events_never_undo_a_later_phase() -> None:
    """A replayed shard Job event after success leaves the phase alone."""
    done = {**accepted(), "phase": "Succeeded"}
    observed = job(completedIndexes="0-9", conditions=(("Complete", "x"),))
    assert status.observe_shards(done, observed, [], seen())["phase"] == "Succeeded"
    reducing = {**accepted(), "phase": "Reducing"}
    assert status.observe_shards(reducing, observed, [], seen())["phase"] == "Reducing"


def test_suspended_job_is_pending_and_resumes_to_running() -> None:
    current = status.observe_shards(
        accepted(), job(suspend=True), [], seen(suspend_requested=True)
    )
    assert current["phase"] == "Pending"
    suspended = condition(current, "Suspended")
    assert suspended is not None
    assert (suspended["status"], suspended["reason"]) == ("True", "Suspended")
    resumed = status.observe_shards(current, job(active=1), [], seen())
    assert resumed["phase"] == "Running"
    assert condition(resumed, "Suspended")["status"] == "False"  # type: ignore[index]


def test_a_job_waiting_for_kueue_is_queued() -> None:
    labels = {"kueue.x-k8s.io/queue-name": "team-a"}
    current = status.observe_shards(
        accepted(), job(suspend=True, labels=labels), [], seen()
    )
    assert condition(current, "Suspended")["reason"] == "Queued"  # type: ignore[index]


def test_transition_time_moves_only_when_a_condition_flips() -> None:
    first = status.set_condition([], "Running", "True", "A", "a", 1, T0)
    same = status.set_condition(first, "Running", "True", "B", "b", 1, T1)
    flipped = status.set_condition(same, "Running", "False", "C", "c", 1, T1)
    assert same[0]["lastTransitionTime"] == T0
    assert flipped[0]["lastTransitionTime"] == T1


def test_changes_patch_only_what_differs_and_delete_what_went() -> None:
    old = {"phase": "Running", "eta": "1m", "progress": "1/2"}
    new = {"phase": "Running", "eta": None, "progress": "2/2"}
    assert status.changes(old, new) == {"eta": None, "progress": "2/2"}
    assert status.changes(new, new) == {}


def test_every_status_field_written_is_declared_in_the_crd() -> None:
    """A real API server prunes undeclared fields: none may be lost that way."""
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    declared = schema["properties"]["status"]
    reducing = {**accepted(), "phase": "Reducing"}
    report = {
        "bestParams": {"C": 1},
        "bestScore": 0.5,
        "refitMetric": "score",
        "nFailedFits": 2,
        "resultsUri": "s3://b/o/cv_results.parquet",
        "summaryUri": "s3://b/o/summary.json",
    }
    observed = job("gs-reduce", 1, conditions=(("Complete", "CompletionsReached"),))
    pods = [pod(0, 0, "Completed", json.dumps(report), job_name="gs-reduce")]
    running = status.observe_shards(
        accepted(), job(active=2, completedIndexes="0"), [], seen()
    )
    for current in (
        accepted(),
        running,
        status.observe_reducer(reducing, observed, pods, seen()),
        status.rejected(SpecError("spec.cv", "bad"), 1, T0),
    ):
        written = {k: v for k, v in current.items() if v is not None}
        jsonschema.Draft7Validator(declared).validate(written)
        assert _undeclared(written, declared) == []


def _undeclared(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return [
            item
            for key, child in value.items()
            for item in (
                [f"{path}.{key}"]
                if key not in properties
                else _undeclared(child, properties[key], f"{path}.{key}")
            )
        ]
    if isinstance(value, list):
        items = schema.get("items", {})
        return [e for child in value for e in _undeclared(child, items, f"{path}[]")]
    return []
