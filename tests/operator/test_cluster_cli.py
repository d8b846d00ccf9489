"""`kubegrid submit`, `status` and `results` against the API emulator."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import pytest
import sklearn.datasets
import yaml

from kubegrid import cli, cluster, errors
from tests.operator.conftest import digits_spec
from tests.support.kube import GRIDSEARCH, Kube

NS = "default"


def run(kube: Kube, *argv: str) -> int:
    """One cluster subcommand, parsed as the CLI parses it."""
    parser = argparse.ArgumentParser(prog="kubegrid")
    cluster.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--kubeconfig", str(kube.kubeconfig)])
    return int(args.handler(args))


def manifest_file(tmp_path: pathlib.Path, spec: dict[str, Any], name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    document = {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": name},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(document))
    return str(path)


def set_status(kube: Kube, name: str, status: dict[str, Any]) -> None:
    client = kube.client()
    try:
        client.patch(GRIDSEARCH, NS, name, {"status": status}, "status")
    finally:
        client.close()


def test_submit_creates_the_search_then_reapplies_it(
    kube: Kube, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest_file(tmp_path, digits_spec(), "digits")
    assert run(kube, "submit", path) == 0
    assert "gridsearch.kubegrid.io/digits created in default" in capsys.readouterr().out
    stored = kube.get(GRIDSEARCH, NS, "digits")
    assert stored is not None
    assert stored["spec"] == digits_spec()

    assert run(kube, "submit", path) == 0
    assert "configured" in capsys.readouterr().out


def test_submit_refuses_a_bad_manifest_before_sending_it(
    kube: Kube, tmp_path: pathlib.Path
) -> None:
    spec = digits_spec()
    spec["cv"] = 1
    mark = kube.mark()
    with pytest.raises(errors.SpecError) as caught:
        run(kube, "submit", manifest_file(tmp_path, spec, "bad"))
    assert caught.value.field == "spec.cv"
    assert kube.count(since=mark) == 0


def test_status_shows_phase_progress_and_best(
    kube: Kube, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(kube, "submit", manifest_file(tmp_path, digits_spec(), "digits"))
    set_status(
        kube,
        "digits",
        {
            "phase": "Running",
            "progress": "40/100",
            "eta": "2m30s",
            "shards": {"total": 10, "succeeded": 4},
            "message": "2 shards running, 4 done",
        },
    )
    capsys.readouterr()
    assert run(kube, "status", "digits") == 0
    out = capsys.readouterr().out
    assert "digits: Running" in out
    assert "40/100 fits (4/10 shards), about 2m30s left" in out


def test_status_wait_ends_with_the_search_and_fails_with_it(
    kube: Kube, tmp_path: pathlib.Path
) -> None:
    run(kube, "submit", manifest_file(tmp_path, digits_spec(), "digits"))
    set_status(kube, "digits", {"phase": "Failed", "message": "shard 1 failed"})
    assert run(kube, "status", "digits", "--wait", "--timeout", "5") == 1


def test_status_of_a_missing_search_is_a_user_error(kube: Kube) -> None:
    with pytest.raises(errors.UserError, match="'nothing' not found"):
        run(kube, "status", "nothing")


def test_results_lists_the_top_candidates_from_storage(
    kube: Kube, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a run, `results` reads summary and cv_results from the output URI."""
    data = tmp_path / "iris.csv"
    sklearn.datasets.load_iris(as_frame=True).frame.to_csv(data, index=False)
    spec = {
        "dataset": {"uri": str(data), "target": "target"},
        "estimator": {"class": "sklearn.tree.DecisionTreeClassifier"},
        "paramGrid": {"max_depth": [1, 2, 3]},
        "cv": 3,
        "output": {"uri": str(tmp_path / "out")},
    }
    path = manifest_file(tmp_path, spec, "iris")
    assert cli.main(["run", path, "--quiet", "--workers", "1"]) == 0
    run(kube, "submit", path)
    set_status(kube, "iris", {"phase": "Succeeded"})
    capsys.readouterr()

    assert run(kube, "results", "iris", "--top", "2") == 0
    out = capsys.readouterr().out
    assert "top 2 of 3 candidates by score:" in out
    assert '{"max_depth": ' in out
    assert "summary: " in out
