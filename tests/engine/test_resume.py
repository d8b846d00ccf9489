"""Shards survive restarts, lost files and corruption without redoing or
trusting the wrong work.

A pod may be killed and restarted, may run twice at once, and its output may
be lost or damaged in storage. These tests leave the output directory in each
of those states, then check from the shard reports, the files and the final
numbers that finished work is kept, missing work is redone, damaged work is
named and recomputed, and the results still equal GridSearchCV's.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from kubegrid import cli, context, execution, local, partials, reducer, storage
from kubegrid import spec as specs
from kubegrid.context import SearchContext
from kubegrid.errors import ResultsError
from tests.engine.searches import (
    Dataset,
    assert_same_search,
    manifest,
    read_outcome,
    write_dataset,
    write_manifest,
)

GRID = {"C": [1.0, 10.0], "gamma": [0.001, 0.01]}
N_SHARDS = 3  # 4 candidates × 3 splits = 12 tasks
KUBEGRID = pathlib.Path(sys.executable).parent / "kubegrid"


@dataclasses.dataclass
class Search:
    """A manifest on disk, its data, and where its output goes."""

    data: Dataset
    path: pathlib.Path
    output: pathlib.Path

    def prepare(self) -> SearchContext:
        """A fresh context, as a newly started pod would build it."""
        return context.prepare(specs.load(self.path))

    def n_tasks(self, ctx: SearchContext, shard: int) -> int:
        return len(ctx.plan.task_ids(shard))

    def shard_file(self, ctx: SearchContext, shard: int) -> pathlib.Path:
        return self.output / partials.shard_key(ctx.fingerprint, shard)

    def expected(self) -> GridSearchCV:
        search = GridSearchCV(SVC(), GRID, cv=3)
        return search.fit(self.data.X, self.data.y)


def make_search(folder: pathlib.Path, rows: int = 400, **spec: object) -> Search:
    data = write_dataset(folder, "digits", rows=rows)
    output = folder / "out"
    document = manifest(
        data,
        output,
        estimator={"class": "sklearn.svm.SVC"},
        param_grid=GRID,
        cv=3,
        **({"sharding": {"shards": N_SHARDS}} | spec),
    )
    return Search(data, write_manifest(folder, document), output)


@pytest.fixture
def search(tmp_path: pathlib.Path) -> Search:
    return make_search(tmp_path)


def run_all_shards(ctx: SearchContext) -> None:
    for shard in range(ctx.plan.n_shards):
        execution.run_shard(ctx, shard)


def test_finished_shard_is_not_fitted_again(search: Search) -> None:
    """A restarted pod whose shard is already published fits nothing and
    leaves the published file as it was."""
    first = execution.run_shard(search.prepare(), 0)
    restarted = search.prepare()
    n_tasks = search.n_tasks(restarted, 0)
    published = search.shard_file(restarted, 0)
    before = (published.stat().st_mtime_ns, published.read_bytes())

    again = execution.run_shard(restarted, 0)

    assert n_tasks > 1
    assert (first["run"], first["skipped"]) == (n_tasks, 0)
    assert (again["run"], again["skipped"]) == (0, n_tasks)
    assert (published.stat().st_mtime_ns, published.read_bytes()) == before


def test_checkpointed_tasks_are_kept_when_the_shard_file_is_lost(
    search: Search,
) -> None:
    """With the shard file gone but a checkpoint of two tasks left (what a pod
    killed mid-shard leaves), a rerun fits only the other tasks, keeps the
    checkpointed records as they were, and publishes the whole shard."""
    ctx = search.prepare()
    execution.run_shard(ctx, 1)
    published = search.shard_file(ctx, 1)
    records = partials.decode(published.read_bytes(), str(published))["records"]
    published.unlink()
    kept = records[:2]
    partials.write_chunk(ctx.output(), ctx.fingerprint, 1, "killedpod000", 0, kept)

    report = execution.run_shard(search.prepare(), 1)

    n_tasks = search.n_tasks(ctx, 1)
    assert n_tasks > 2
    assert (report["run"], report["skipped"]) == (n_tasks - 2, 2)
    republished = partials.decode(published.read_bytes(), str(published))["records"]
    assert [r["task"] for r in republished] == [r["task"] for r in records]
    # Fit times are measured afresh on every fit: equal ones were not refitted.
    assert republished[:2] == kept
    assert not list((search.output / "partials").rglob("chunks/*/*.json"))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_local_run_lists_partials_once_and_keeps_what_was_done(
    search: Search, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """``kubegrid run`` marks the plan and lists the partial files once for
    all its shards, yet keeps a published shard as it was, keeps a killed
    run's checkpointed tasks, and drops their checkpoint files."""
    ctx = search.prepare()
    execution.run_shard(ctx, 0)
    execution.run_shard(ctx, 1)
    finished = search.shard_file(ctx, 0).read_bytes()
    lost = search.shard_file(ctx, 1)
    records = partials.decode(lost.read_bytes(), str(lost))["records"]
    lost.unlink()
    kept = records[:2]
    partials.write_chunk(ctx.output(), ctx.fingerprint, 1, "killedpod000", 0, kept)
    # Listings are logged to a file: forked workers list in their own memory.
    log = search.output.parent / "listings.txt"
    real_list = storage.LocalStore.list

    def logging_list(self: storage.LocalStore, prefix: str) -> list[str]:
        with log.open("a") as handle:
            handle.write(prefix + "\n")
        return real_list(self, prefix)

    monkeypatch.setattr(storage.LocalStore, "list", logging_list)

    summary = local.run(search.prepare(), workers)

    # One listing before the shards, one by the reducer: none per shard.
    listed = log.read_text().splitlines()
    assert [p for p in listed if p.startswith("partials/")] == [
        f"partials/{ctx.fingerprint}/"
    ] * 2
    assert search.shard_file(ctx, 0).read_bytes() == finished
    republished = partials.decode(lost.read_bytes(), str(lost))["records"]
    assert republished[:2] == kept
    assert not list((search.output / "partials").rglob("chunks/*/*.json"))
    assert summary["bestScore"] == search.expected().best_score_


def truncate(path: pathlib.Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: pathlib.Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_corrupt_shard_file_is_named_then_recomputed(search: Search, damage) -> None:
    """The reducer refuses a damaged shard file, naming the file and the shard;
    rerunning that shard fits its tasks again and the reduced results equal
    GridSearchCV's."""
    ctx = search.prepare()
    run_all_shards(ctx)
    damaged = search.shard_file(ctx, 1)
    damage(damaged)

    with pytest.raises(ResultsError) as refused:
        reducer.reduce(ctx)
    report = execution.run_shard(search.prepare(), 1)
    reducer.reduce(search.prepare())

    message = str(refused.value)
    n_tasks = search.n_tasks(ctx, 1)
    assert "shard-00001.json" in message and f"shards 1 ({n_tasks} tasks)" in message
    assert (report["run"], report["skipped"]) == (n_tasks, 0)
    assert_same_search(read_outcome(search.output), search.expected(), search.data.X)


def test_reduce_names_and_recomputes_a_missing_shard(
    search: Search, caplog: pytest.LogCaptureFixture
) -> None:
    """``kubegrid reduce`` with one shard's results missing names that shard,
    runs it itself (no shard pod will run again), and completes the results."""
    ctx = search.prepare()
    execution.run_shard(ctx, 0)
    execution.run_shard(ctx, 2)

    code = cli.main(["reduce", str(search.path)])

    assert code == 0
    assert f"shards 1 ({search.n_tasks(ctx, 1)} tasks) of 3" in caplog.text
    summary = json.loads((search.output / "summary.json").read_text())
    assert summary["nTasks"] == ctx.plan.n_tasks
    assert (search.output / partials.shard_key(ctx.fingerprint, 1)).exists()


def test_two_pods_running_one_index_agree(tmp_path: pathlib.Path) -> None:
    """Two processes running the same shard at once both succeed, and the
    reduced results are complete and equal GridSearchCV's."""
    search = make_search(tmp_path, rows=1797, sharding={"shards": 1})
    argv = [str(KUBEGRID), "run-shard", str(search.path), "--index", "0"]
    pods = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outcomes = [pod.communicate(timeout=300) for pod in pods]

    for pod, (out, err) in zip(pods, outcomes, strict=True):
        assert pod.returncode == 0, err.decode()
        report = json.loads(out.decode().strip().splitlines()[-1])
        assert report["tasks"] == 12
    assert cli.main(["reduce", str(search.path)]) == 0
    ours = read_outcome(search.output)
    assert ours.summary["nTasks"] == 12
    assert_same_search(ours, search.expected(), search.data.X)


def test_a_new_search_in_an_old_output_leaves_no_stale_artifacts(
    tmp_path: pathlib.Path,
) -> None:
    """Artifacts one search wrote and the next does not are removed, not left."""
    data = write_dataset(tmp_path, "iris")
    out = tmp_path / "out"
    svc = {"class": "sklearn.svm.SVC"}
    first = manifest(data, out, estimator=svc, param_grid={"C": [1.0, 10.0]})
    assert cli.main(["run", str(write_manifest(tmp_path, first)), "--quiet"]) == 0
    assert (out / "best_estimator.joblib").exists()

    second = manifest(
        data,
        out,
        estimator=svc,
        param_grid={"C": [0.5, 5.0]},
        scoring=["accuracy", "f1_macro"],
        refit=False,
    )
    path = write_manifest(tmp_path, second)
    assert cli.main(["run", str(path), "--quiet"]) == 0

    assert (out / "summary.json").exists()
    assert not (out / "best_estimator.joblib").exists()

    # A search whose every fit fails leaves no results of the one before.
    failing = manifest(
        data,
        out,
        estimator={"class": "sklearn.svm.SVC", "params": {"class_weight": {5: 2.0}}},
        param_grid={"C": [0.5, 5.0]},
    )
    assert cli.main(["run", str(write_manifest(tmp_path, failing)), "--quiet"]) == 2
    assert not [p.name for p in out.iterdir() if p.name != "partials"]


def rerun_tasks(search: Search, caplog: pytest.LogCaptureFixture) -> list[int]:
    """Run ``search`` with ``kubegrid run``; how many tasks each shard fitted."""
    with caplog.at_level("INFO", logger="kubegrid.execution"):
        code = cli.main(["run", str(search.path), "--quiet", "--workers", "1"])
    assert code == 0
    return [
        int(line.split(": ")[1].split()[0])
        for line in caplog.messages
        if "tasks to run" in line
    ]


def test_a_rerun_cut_into_other_shards_runs_only_what_is_missing(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sharding is not part of a search's identity: a rerun with another shard
    count finds the tasks already done, whichever files hold them, and fits
    the rest, even where a file of the old numbering exists."""
    before = make_search(tmp_path)
    old = before.prepare()
    run_all_shards(old)
    lost = before.shard_file(old, 1)
    lost_tasks = len(partials.decode(lost.read_bytes(), str(lost))["records"])
    lost.unlink()
    after = make_search(tmp_path, sharding={"shards": 5})

    ran = rerun_tasks(after, caplog)

    assert sum(ran) == lost_tasks
    assert_same_search(read_outcome(after.output), after.expected(), after.data.X)


def test_checkpoints_of_another_shard_count_survive_a_local_rerun(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run killed before any shard finished leaves only checkpoints; a rerun
    cut into other shards keeps every task they hold, even as its first shards
    publish and drop the old checkpoints that carry their numbers."""
    before = make_search(tmp_path)
    old = before.prepare()
    run_all_shards(old)
    store = old.output()
    for shard in range(old.plan.n_shards):
        published = before.shard_file(old, shard)
        records = partials.decode(published.read_bytes(), str(published))["records"]
        partials.write_chunk(store, old.fingerprint, shard, "killed000000", 0, records)
        published.unlink()
    after = make_search(tmp_path, sharding={"shards": 5})

    ran = rerun_tasks(after, caplog)

    assert ran and sum(ran) == 0, caplog.messages
    assert not list((after.output / "partials").rglob("chunks/*/*.json"))
    assert_same_search(read_outcome(after.output), after.expected(), after.data.X)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it in the process runs."""


def test_tasks_sharing_a_prefix_are_checkpointed_one_by_one(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidates that reuse one fitted pipeline prefix are checkpointed as
    each finishes, not when the whole (prefix, split) unit has: a kill in the
    middle of a unit loses none of the finished fits."""
    data = write_dataset(tmp_path, "diabetes")
    document = manifest(
        data,
        tmp_path / "out",
        estimator={
            "pipeline": [
                {"name": "s", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "r", "class": "sklearn.linear_model.Ridge"},
            ]
        },
        param_grid={"r__alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]},
        cv=3,
        sharding={"shards": 1},
    )
    ctx = context.prepare(specs.parse(document))
    monkeypatch.setenv(execution.CHECKPOINT_ENV, "0")
    real_score, fits = execution._score, []

    def score_then_die(*args: object, **kwargs: object) -> object:
        if len(fits) == 4:
            raise Killed
        fits.append(args[1])
        return real_score(*args, **kwargs)

    monkeypatch.setattr(execution, "_score", score_then_die)

    with pytest.raises(Killed):
        execution.run_shard(ctx, 0)

    # The first unit is 6 candidates on one split: 4 were scored, 4 are kept.
    records, problems = partials.read_records(ctx.output(), ctx.fingerprint, 0)
    assert not problems
    assert sorted(records) == sorted(fits) and len(fits) == 4
