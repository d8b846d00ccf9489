"""One cost-sensitive search with a holdout, run once and shared by the tests.

The manifest declares every kind of metric kubegrid builds (a cost matrix, a
``sklearn.metrics`` function with arguments, one on probabilities, and a
named scorer), holds a quarter of the rows out and tunes the threshold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pathlib
from typing import Any

import pytest

from kubegrid import cli, results, storage
from tests.engine.searches import Dataset, manifest, write_dataset, write_manifest

COSTS = [[0.0, 10.0], [1.0, 0.0]]
GRID = {"clf__C": [0.01, 0.1, 1.0, 10.0], "clf__class_weight": [None, "balanced"]}
PIPELINE = {
    "pipeline": [
        {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
        {
            "name": "clf",
            "class": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 5000},
        },
    ]
}
SCORING = {
    "cost": {"costMatrix": {"labels": [0, 1], "costs": COSTS}},
    "f2": {"metric": "fbeta_score", "kwargs": {"beta": 2, "pos_label": 0}},
    "auc": {"metric": "roc_auc_score", "responseMethod": "predict_proba"},
    "accuracy": "accuracy",
}


@dataclasses.dataclass
class Search:
    """A finished kubegrid search: its inputs and its output directory."""

    dataset: Dataset
    document: dict[str, Any]
    output: pathlib.Path
    printed: str = ""  # what `kubegrid run` wrote to standard output

    def store(self) -> storage.Store:
        return storage.open_store(str(self.output))

    def cv_results(self) -> dict[str, Any]:
        return results.read_cv_results(self.store())

    def summary(self) -> dict[str, Any]:
        return results.read_summary(self.store())


def cost_search_document(dataset: Dataset, output: pathlib.Path) -> dict[str, Any]:
    return manifest(
        dataset,
        output,
        estimator=PIPELINE,
        param_grid=GRID,
        cv={
            "splitter": "StratifiedKFold",
            "nSplits": 4,
            "shuffle": True,
            "randomState": 0,
        },
        scoring=SCORING,
        refit="cost",
        threshold={"metric": "cost"},
        returnTrainScore=True,
    )


@pytest.fixture(scope="session")
def cost_search(tmp_path_factory: pytest.TempPathFactory) -> Search:
    folder = tmp_path_factory.mktemp("cost-search")
    dataset = write_dataset(folder, "breast_cancer")
    document = cost_search_document(dataset, folder / "out")
    document["spec"]["dataset"]["holdout"] = {"fraction": 0.25, "randomState": 0}
    path = write_manifest(folder, document)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["run", str(path), "--quiet", "--workers", "2"]) == 0
    return Search(dataset, document, folder / "out", printed.getvalue())
