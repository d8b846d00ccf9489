"""Every fit failing ends the search at once, as a user error that says why.

The SVC here weighs a class iris does not have (``class_weight: {5: 2.0}``),
which its fit refuses, so every candidate fails in fit. Each parameter is
valid on its own: a value scikit-learn's parameter checks refuse (a negative
``C``) is refused before any fit instead, see
tests/faults/test_hostile_input.py. scikit-learn records such failures
(errorScore: nan) and raises only once every fit has failed; kubegrid must end
with exit code 2, which the operator's podFailurePolicy never retries, and a
one-line summary of the fit error, never a traceback.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from kubegrid import cli
from tests.engine.searches import manifest, write_dataset, write_manifest

GRID = {"C": [1.0, 2.0]}
SVC_SAYS = "The classes, [0, 1, 2], are not in class_weight"


def write_search(folder: pathlib.Path, **spec: object) -> pathlib.Path:
    folder.mkdir(exist_ok=True)
    data = write_dataset(folder, "iris")
    document = manifest(
        data,
        folder / "out",
        estimator={"class": "sklearn.svm.SVC", "params": {"class_weight": {5: 2.0}}},
        param_grid=GRID,
        cv=3,
        **({"sharding": {"shards": 1}} | spec),
    )
    return write_manifest(folder, document)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_run_with_every_fit_failing_fails_with_the_fit_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kubegrid run`` exits 2, counts the failed fits, quotes SVC's own
    complaint once, prints no traceback and writes no summary."""
    path = write_search(tmp_path)

    code = cli.main(["run", str(path), "--quiet", "--workers", "1"])

    err = capsys.readouterr().err
    assert code == 2, err
    (line,) = error_lines(err)
    assert line.startswith("error: all 6 fits failed; the most common error:")
    assert SVC_SAYS in line
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_reduce_after_failed_shards_fails_like_run(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a cluster the shard records its failed fits and succeeds; the
    reducer then ends with the same exit code and message as ``kubegrid run``,
    and its report tells the operator it is the user's to fix."""
    local = write_search(tmp_path / "local")
    cli.main(["run", str(local), "--quiet", "--workers", "1"])
    run_says = error_lines(capsys.readouterr().err)
    pod = write_search(tmp_path / "pod")
    report = tmp_path / "termination-log"

    shard = cli.main(["run-shard", str(pod), "--index", "0", "--workers", "1"])
    shard_report = json.loads(capsys.readouterr().out.strip())
    code = cli.main(["reduce", str(pod), "--report-to", str(report)])

    err = capsys.readouterr().err
    assert shard == 0
    assert (shard_report["failed"], shard_report["tasks"]) == (6, 6)
    assert code == 2
    assert error_lines(err) == run_says and SVC_SAYS in run_says[0]
    assert "Traceback" not in err
    reported = json.loads(report.read_text())
    assert reported == {"error": run_says[0].removeprefix("error: "), "kind": "user"}
    assert not (tmp_path / "pod" / "out" / "summary.json").exists()


def test_error_score_raise_fails_the_shard_at_the_first_fit(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With errorScore: raise, ``run-shard`` exits 2 naming the candidate,
    the split and SVC's complaint, reports a user error, and publishes no
    shard file."""
    path = write_search(tmp_path, errorScore="raise")
    report = tmp_path / "termination-log"

    code = cli.main(
        ["run-shard", str(path), "--index", "0", "--report-to", str(report)]
    )

    err = capsys.readouterr().err
    assert code == 2, err
    (line,) = error_lines(err)
    # With several CPUs the shard's tasks run in parallel workers, so the
    # first failure may be any candidate's; it must still be named in full.
    assert re.search(
        r"fit failed for candidate [01] \{'C': [12]\.0\} on split \d", line
    )
    assert SVC_SAYS in line and "errorScore is 'raise'" in line
    assert "Traceback" not in err
    assert json.loads(report.read_text())["kind"] == "user"
    assert not list((tmp_path / "out").glob("partials/*/shard-*.json"))
