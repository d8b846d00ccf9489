"""A shard pod SIGKILLed midway, then retried, loses no finished work.

The shard runs as ``kubegrid run-shard`` in a subprocess with a checkpoint
after every task (``KUBEGRID_CHECKPOINT_SECONDS=0``), and is killed with
SIGKILL, as the kubelet kills a pod, once its first checkpoint is on disk.
The retry must keep every checkpointed task as it was, fit only the rest, and
the reduced results must equal GridSearchCV's.
"""

from __future__ import annotations

import pathlib
import signal

import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from kubegrid import cli, partials
from tests.engine.searches import (
    Dataset,
    assert_same_search,
    manifest,
    read_outcome,
    write_dataset,
    write_manifest,
)
from tests.faults.helpers import (
    last_json_line,
    processes_running,
    start,
    wait_for_none,
    wait_until,
)

# 8 candidates × 3 splits of SVC on all 1797 digits: seconds of fitting, so
# a kill after the first checkpoint lands midway.
GRID = {"C": [0.5, 1.0, 5.0, 10.0], "gamma": [0.0005, 0.001]}
N_TASKS = 24


def digits_search(
    folder: pathlib.Path, shards: int
) -> tuple[Dataset, pathlib.Path, str]:
    """An SVC search of GRID on digits, 3 folds: its data, output and manifest."""
    data = write_dataset(folder, "digits")
    output = folder / "out"
    document = manifest(
        data,
        output,
        estimator={"class": "sklearn.svm.SVC"},
        param_grid=GRID,
        cv=3,
        sharding={"shards": shards},
    )
    return data, output, str(write_manifest(folder, document))


def checkpointed(output: pathlib.Path) -> dict[int, partials.Record]:
    """Records of every checkpoint chunk left under ``output``, by task."""
    records: dict[int, partials.Record] = {}
    for chunk in sorted(output.glob("partials/*/chunks/shard-00000/*.json")):
        for record in partials.decode(chunk.read_bytes(), str(chunk))["records"]:
            records[record["task"]] = record
    return records


def test_killed_shard_is_resumed_without_redoing_checkpointed_tasks(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After SIGKILL the shard file is absent; the retry reports the
    checkpointed tasks as skipped (run + skipped = all tasks), publishes them
    unchanged (same fit times: not fitted again), and the reduced results
    equal GridSearchCV's."""
    data, output, path = digits_search(tmp_path, shards=1)
    argv = ("run-shard", path, "--index", "0", "--shards", "1", "--workers", "1")

    pod = start(*argv, env={"KUBEGRID_CHECKPOINT_SECONDS": "0"}, log=tmp_path / "log")
    wait_until(pod, lambda: bool(checkpointed(output)), "its first checkpoint")
    pod.send_signal(signal.SIGKILL)
    pod.wait()
    kept = checkpointed(output)

    assert pod.returncode == -signal.SIGKILL
    assert not list(output.glob("partials/*/shard-00000.json"))
    assert 0 < len(kept) < N_TASKS

    # The retry, as a new pod would run it (in this process, to save a start).
    assert cli.main(list(argv)) == 0
    report = last_json_line(capsys.readouterr().out)
    assert report["tasks"] == N_TASKS
    assert report["skipped"] == len(kept) > 0
    assert report["run"] + report["skipped"] == N_TASKS
    (published,) = output.glob("partials/*/shard-00000.json")
    records = partials.decode(published.read_bytes(), str(published))["records"]
    assert [r["task"] for r in records] == list(range(N_TASKS))
    assert all(records[task] == record for task, record in kept.items())
    assert not checkpointed(output)

    assert cli.main(["reduce", path, "--shards", "1"]) == 0
    expected = GridSearchCV(SVC(), GRID, cv=3).fit(data.X, data.y)
    assert_same_search(read_outcome(output), expected, data.X)


def test_checkpoint_interval_that_is_not_a_number_is_a_user_error(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A KUBEGRID_CHECKPOINT_SECONDS that is not a number of seconds ends the
    shard with exit 2, naming the variable and its value."""
    data = write_dataset(tmp_path, "iris")
    document = manifest(
        data,
        tmp_path / "out",
        estimator={"class": "sklearn.svm.SVC"},
        param_grid={"C": [1.0]},
    )
    path = str(write_manifest(tmp_path, document))
    monkeypatch.setenv("KUBEGRID_CHECKPOINT_SECONDS", "soon")

    code = cli.main(["run-shard", path, "--index", "0", "--workers", "1"])

    err = capsys.readouterr().err
    assert code == 2, err
    assert "KUBEGRID_CHECKPOINT_SECONDS='soon'" in err and "number of seconds" in err
    assert "Traceback" not in err


def test_killed_local_run_takes_its_workers_with_it(tmp_path: pathlib.Path) -> None:
    """SIGKILL a two-worker ``kubegrid run``: no forked worker lives on
    (each would wait forever on a pipe its sibling holds open), and running
    it again finishes the search with GridSearchCV's numbers."""
    data, output, path = digits_search(tmp_path, shards=4)

    run = start(
        "run",
        path,
        "--workers",
        "2",
        "--quiet",
        env={"KUBEGRID_CHECKPOINT_SECONDS": "0"},
        log=tmp_path / "log",
    )
    wait_until(run, lambda: bool(checkpointed(output)), "its first checkpoint")
    assert len(processes_running(path)) == 3, "the run and its two workers"
    run.send_signal(signal.SIGKILL)
    run.wait()

    assert wait_for_none(path) == []
    assert cli.main(["run", path, "--quiet"]) == 0
    expected = GridSearchCV(SVC(), GRID, cv=3).fit(data.X, data.y)
    assert_same_search(read_outcome(output), expected, data.X)
