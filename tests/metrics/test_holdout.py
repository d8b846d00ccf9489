"""A holdout given as a second dataset, for a regressor: residuals, no curves."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV

from kubegrid import context, local, results
from kubegrid import spec as specs
from kubegrid.errors import DataError
from tests.engine.searches import manifest, write_dataset


def test_holdout_uri_scores_a_regressor_on_the_second_dataset(
    tmp_path: pathlib.Path,
) -> None:
    full = write_dataset(tmp_path, "diabetes")
    train_path, test_path = tmp_path / "train.csv", tmp_path / "test.csv"
    full.frame.iloc[:300].to_csv(train_path, index=False)
    full.frame.iloc[300:].to_csv(test_path, index=False)
    document = manifest(
        full,
        tmp_path / "out",
        estimator={"class": "sklearn.linear_model.Ridge"},
        param_grid={"alpha": [0.01, 0.1, 1.0, 10.0]},
        cv=5,
        scoring={"r2": "r2", "mae": "neg_mean_absolute_error"},
        refit="mae",
    )
    document["spec"]["dataset"]["uri"] = str(train_path)
    document["spec"]["dataset"]["holdout"] = {"uri": str(test_path)}
    local.run(context.prepare(specs.parse(document)), 1)

    X, y = full.X, full.y
    search = GridSearchCV(
        Ridge(),
        {"alpha": [0.01, 0.1, 1.0, 10.0]},
        scoring={"r2": "r2", "mae": "neg_mean_absolute_error"},
        refit="mae",
        cv=5,
    ).fit(X.iloc[:300], y.iloc[:300])
    holdout = json.loads((tmp_path / "out" / results.HOLDOUT).read_text())
    X_test, y_test = X.iloc[300:], y.iloc[300:]
    assert holdout["nSamples"] == len(y_test)
    for key in ("r2", "mae"):
        expected = search.scorer_[key](search.best_estimator_, X_test, y_test)
        assert holdout["scores"][key] == expected
    assert holdout["metricValues"]["mae"] == pytest.approx(-holdout["scores"]["mae"])
    residuals = y_test.to_numpy() - search.predict(X_test)
    assert holdout["residuals"]["mean"] == pytest.approx(residuals.mean())
    assert holdout["residuals"]["meanAbsolute"] == pytest.approx(
        np.abs(residuals).mean()
    )
    assert "curves" not in holdout and "confusionMatrix" not in holdout
    assert (tmp_path / "out" / results.REPORT).exists()


def test_holdout_dataset_without_the_target_is_named(tmp_path: pathlib.Path) -> None:
    full = write_dataset(tmp_path, "diabetes")
    test_path = tmp_path / "test.csv"
    full.frame.drop(columns=["target"]).to_csv(test_path, index=False)
    document = manifest(
        full,
        tmp_path / "out",
        estimator={"class": "sklearn.linear_model.Ridge"},
        param_grid={"alpha": [1.0]},
    )
    document["spec"]["dataset"]["holdout"] = {"uri": str(test_path)}
    with pytest.raises(DataError) as caught:
        context.prepare(specs.parse(document))
    assert caught.value.field == "spec.dataset.holdout.uri"
    assert "'target'" in caught.value.message
