"""A reducer killed halfway leaves nothing that looks final, and a rerun
rewrites the same artifacts.

The output lives in S3 behind the fault proxy. Every PUT of
``best_estimator.joblib`` fails with a 500, so the reducer, having written
``cv_results.parquet``, sits in its storage retries; the test SIGKILLs it
there. That is the middle of a reduce, reached without timing luck: the refit
model is written after cv_results and before summary.json.
"""

from __future__ import annotations

import io
import json
import pathlib
import signal
from typing import Any

import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from kubegrid import cli, report
from tests.faults.helpers import (
    last_json_line,
    processes_running,
    start,
    wait_for_none,
    wait_until,
)

GRID = {"C": [0.1, 1.0, 10.0], "gamma": [0.01, 0.1, 1.0]}


class Search:
    """An iris search in a fresh bucket, reached through the fault proxy."""

    def __init__(
        self,
        s3: Any,
        proxy: Any,
        tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.s3, self.proxy, self.tmp_path = s3, proxy, tmp_path
        self.capsys = capsys
        text = load_iris(as_frame=True).frame.to_csv(index=False)
        s3.client.put_object(Bucket=s3.bucket, Key="iris.csv", Body=text.encode())
        self.frame = pd.read_csv(io.StringIO(text))
        document = {
            "apiVersion": "kubegrid.io/v1alpha1",
            "kind": "GridSearch",
            "metadata": {"name": "reducer-crash"},
            "spec": {
                "dataset": {"uri": f"s3://{s3.bucket}/iris.csv", "target": "target"},
                "estimator": {"class": "sklearn.svm.SVC"},
                "paramGrid": GRID,
                "cv": 3,
                "sharding": {"shards": 1},
                "output": {"uri": f"s3://{s3.bucket}/out"},
                "storage": {"endpointUrl": proxy.url},
            },
        }
        self.path = tmp_path / "search.yaml"
        self.path.write_text(yaml.safe_dump(document))

    def kubegrid(self, command: str, *args: str) -> dict[str, Any]:
        """Run a command that is not killed in this process; its JSON report."""
        argv = [command, str(self.path), "--shards", "1", *args]
        assert cli.main(argv) == 0
        return last_json_line(self.capsys.readouterr().out)

    def run_shard(self) -> None:
        self.kubegrid("run-shard", "--index", "0", "--workers", "1")

    def reduce_killed_halfway(self) -> None:
        """Start ``kubegrid reduce``; SIGKILL it once it retries the model PUT."""
        fault = self.proxy.inject(
            10_000, "internal", method="PUT", path=r"/out/best_estimator\.joblib$"
        )
        reducer = start(
            "reduce",
            str(self.path),
            "--shards",
            "1",
            env=self.s3.env,
            log=self.tmp_path / "reduce.log",
        )
        wait_until(reducer, lambda: fault.injected > 0, "the refit model's PUT")
        if report.drawing_processes():
            assert len(processes_running(str(self.path))) > 1, "drawing in forks"
        reducer.send_signal(signal.SIGKILL)
        reducer.wait()
        self.proxy.clear()
        assert reducer.returncode == -signal.SIGKILL
        # Its drawing processes go with it rather than wait forever.
        assert wait_for_none(str(self.path)) == []

    def read(self, name: str) -> bytes | None:
        try:
            response = self.s3.client.get_object(
                Bucket=self.s3.bucket, Key=f"out/{name}"
            )
        except self.s3.client.exceptions.NoSuchKey:
            return None
        body: bytes = response["Body"].read()
        return body

    def expected(self) -> GridSearchCV:
        X, y = self.frame.drop(columns="target"), self.frame["target"]
        return GridSearchCV(SVC(), GRID, cv=3).fit(X, y)


@pytest.fixture
def search(
    s3: Any,
    faulty_s3: Any,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Search:
    # Credentials for the commands run in this process, as a pod has them.
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return Search(s3, faulty_s3, tmp_path, capsys)


def test_killed_reducer_leaves_no_summary_and_rerun_matches(search: Search) -> None:
    """Killed after cv_results.parquet, the reducer leaves no summary.json;
    reducing again writes a byte-identical cv_results.parquet and a summary
    whose best candidate is GridSearchCV's."""
    search.run_shard()

    search.reduce_killed_halfway()
    halfway = search.read("cv_results.parquet")

    assert halfway is not None
    assert search.read("summary.json") is None

    report = search.kubegrid("reduce")

    expected = search.expected()
    summary = json.loads(search.read("summary.json") or b"null")
    assert search.read("cv_results.parquet") == halfway
    assert summary["bestParams"] == report["bestParams"] == expected.best_params_
    assert summary["bestScore"] == expected.best_score_
    assert summary["bestIndex"] == expected.best_index_


def test_killed_rerun_of_the_reducer_withdraws_the_old_summary(
    search: Search,
) -> None:
    """A reducer killed while rewriting finished results leaves no summary:
    the one from the earlier reduce no longer vouches for artifacts being
    replaced. Reducing again restores it unchanged but for its timings."""
    search.run_shard()
    search.kubegrid("reduce")
    first = json.loads(search.read("summary.json") or b"null")

    search.reduce_killed_halfway()

    assert search.read("summary.json") is None

    search.kubegrid("reduce")
    again = json.loads(search.read("summary.json") or b"null")
    timings = {"reduceSeconds", "refitSeconds"}
    assert {k: v for k, v in again.items() if k not in timings} == {
        k: v for k, v in first.items() if k not in timings
    }
