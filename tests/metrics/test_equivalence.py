"""Declared metrics, holdout and threshold give scikit-learn's own numbers.

The Python side writes each scorer as a user would, with ``make_scorer`` (the
cost as a plain function of the confusion matrix), splits the rows with
``train_test_split`` and fits GridSearchCV on the training part only.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    fbeta_score,
    make_scorer,
    mean_absolute_error,
    median_absolute_error,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedKFold,
    TunedThresholdClassifierCV,
    train_test_split,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from kubegrid import context, local, results, storage
from kubegrid import spec as specs
from tests.engine.searches import manifest, write_dataset
from tests.metrics.conftest import COSTS, GRID, Search


def business_cost(y_true: Any, y_pred: Any) -> float:
    """Average cost per sample, written the way a user would in Python."""
    counts = confusion_matrix(y_true, y_pred, labels=[0, 1])
    return float((counts * np.array(COSTS)).sum() / len(y_true))


def python_scorers() -> dict[str, Any]:
    return {
        "cost": make_scorer(business_cost, greater_is_better=False),
        "f2": make_scorer(fbeta_score, beta=2, pos_label=0),
        "auc": make_scorer(roc_auc_score, response_method="predict_proba"),
        "accuracy": "accuracy",
    }


@pytest.fixture(scope="module")
def sklearn_side(cost_search: Search) -> dict[str, Any]:
    X, y = cost_search.dataset.X, cost_search.dataset.y
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    search = GridSearchCV(
        Pipeline(
            [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=5000))]
        ),
        GRID,
        scoring=python_scorers(),
        refit="cost",
        cv=StratifiedKFold(4, shuffle=True, random_state=0),
        return_train_score=True,
    ).fit(X_train, y_train)
    return {
        "search": search,
        "X_train": X_train,
        "y_train": y_train,
        "X_test": X_test,
        "y_test": y_test,
    }


def assert_same_cv_results(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for key, expected in theirs.items():
        if key.endswith("_time") or key.startswith("param_"):
            continue
        if key == "params":
            assert ours[key] == expected
            continue
        np.testing.assert_array_equal(np.asarray(ours[key]), expected, err_msg=key)


def test_cv_results_equal_gridsearchcv_with_python_scorers(
    cost_search: Search, sklearn_side: dict[str, Any]
) -> None:
    """fbeta (beta 2), the cost matrix and roc_auc on probabilities: the same
    numbers, ranks and best candidate, the cost stored negated."""
    search = sklearn_side["search"]
    ours = cost_search.cv_results()
    assert_same_cv_results(ours, search.cv_results_)
    assert (ours["mean_test_cost"] <= 0).all()
    summary = cost_search.summary()
    assert summary["bestIndex"] == search.best_index_
    assert summary["nSamples"] == len(sklearn_side["y_train"])


def test_refit_model_is_scored_on_the_holdout_with_every_metric(
    cost_search: Search, sklearn_side: dict[str, Any]
) -> None:
    """holdout.json holds each scorer's value on the test rows, and the cost
    also as a positive average cost; the refit model predicts the same."""
    search, X_test, y_test = (
        sklearn_side["search"],
        sklearn_side["X_test"],
        sklearn_side["y_test"],
    )
    model = joblib.load(cost_search.output / results.BEST_ESTIMATOR)
    np.testing.assert_array_equal(model.predict(X_test), search.predict(X_test))
    holdout = json.loads((cost_search.output / results.HOLDOUT).read_text())
    for key in python_scorers():
        expected = search.scorer_[key](search.best_estimator_, X_test, y_test)
        assert holdout["scores"][key] == expected, key
    assert holdout["metricValues"]["cost"] == business_cost(
        y_test, search.predict(X_test)
    )
    assert (
        holdout["confusionMatrix"]
        == confusion_matrix(y_test, search.predict(X_test)).tolist()
    )
    assert holdout["classificationReport"]["accuracy"] == pytest.approx(
        holdout["scores"]["accuracy"], abs=0
    )
    assert cost_search.summary()["holdout"]["scores"] == holdout["scores"]


def test_threshold_is_tuned_as_tunedthresholdclassifiercv_tunes_it(
    cost_search: Search, sklearn_side: dict[str, Any]
) -> None:
    """The chosen threshold and both test-set costs match scikit-learn's."""
    search = sklearn_side["search"]
    cost = make_scorer(business_cost, greater_is_better=False)
    tuned = TunedThresholdClassifierCV(
        clone(search.best_estimator_), scoring=cost, cv=5
    ).fit(sklearn_side["X_train"], sklearn_side["y_train"])
    X_test, y_test = sklearn_side["X_test"], sklearn_side["y_test"]
    threshold = cost_search.summary()["holdout"]["threshold"]
    assert threshold["tuned"]["threshold"] == tuned.best_threshold_
    assert threshold["tuned"]["metricValue"] == business_cost(
        y_test, tuned.predict(X_test)
    )
    assert threshold["default"]["threshold"] == 0.5
    assert threshold["default"]["metricValue"] == business_cost(
        y_test, search.predict(X_test)
    )
    saved = joblib.load(cost_search.output / results.TUNED_ESTIMATOR)
    np.testing.assert_array_equal(saved.predict(X_test), tuned.predict(X_test))


def test_multiclass_cost_matrix_equals_python_cost(tmp_path: pathlib.Path) -> None:
    """A 3 × 3 cost matrix on iris, refit by it, without a holdout."""
    costs = [[0, 1, 4], [2, 0, 1], [8, 3, 0]]
    dataset = write_dataset(tmp_path, "iris")
    document = manifest(
        dataset,
        tmp_path / "out",
        estimator={
            "class": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 2000},
        },
        param_grid={"C": [0.01, 0.1, 1.0]},
        cv=3,
        scoring={"cost": {"costMatrix": {"labels": [0, 1, 2], "costs": costs}}},
        refit="cost",
    )
    local.run(context.prepare(specs.parse(document)), 1)
    ours = results.read_cv_results(storage.open_store(str(tmp_path / "out")))

    def iris_cost(y_true: Any, y_pred: Any) -> float:
        counts = confusion_matrix(y_true, y_pred, labels=[0, 1, 2])
        return float((counts * np.array(costs)).sum() / len(y_true))

    theirs = GridSearchCV(
        LogisticRegression(max_iter=2000),
        {"C": [0.01, 0.1, 1.0]},
        scoring={"cost": make_scorer(iris_cost, greater_is_better=False)},
        refit="cost",
        cv=3,
    ).fit(dataset.X, dataset.y)
    assert_same_cv_results(ours, theirs.cv_results_)


def _run_local(tmp_path: pathlib.Path, document: dict[str, Any]) -> dict[str, Any]:
    ctx = context.prepare(specs.parse(document))
    summary = local.run(ctx, 1)
    return summary | {"table": results.read_cv_results(ctx.output())}


def test_error_metrics_rank_the_smallest_error_first(tmp_path: pathlib.Path) -> None:
    """An ``*_error`` function is a loss by scikit-learn's naming rule, and
    ``greaterIsBetter: false`` says so explicitly: both equal make_scorer with
    greater_is_better=False, and refit picks the smallest error."""
    dataset = write_dataset(tmp_path, "diabetes")
    grid = {"alpha": [0.001, 0.1, 10.0, 1000.0]}
    document = manifest(
        dataset,
        tmp_path / "out",
        estimator={"class": "sklearn.linear_model.Ridge"},
        param_grid=grid,
        cv=4,
        scoring={
            "mae": {"metric": "mean_absolute_error"},
            "medae": {"metric": "median_absolute_error", "greaterIsBetter": False},
            "r2": {"metric": "r2_score"},
        },
        refit="mae",
    )
    ours = _run_local(tmp_path, document)

    theirs = GridSearchCV(
        Ridge(),
        grid,
        scoring={
            "mae": make_scorer(mean_absolute_error, greater_is_better=False),
            "medae": make_scorer(median_absolute_error, greater_is_better=False),
            "r2": make_scorer(r2_score),
        },
        refit="mae",
        cv=4,
    ).fit(dataset.X, dataset.y)
    assert_same_cv_results(ours["table"], theirs.cv_results_)
    assert ours["bestIndex"] == theirs.best_index_
    assert ours["bestParams"] == theirs.best_params_
    assert ours["greaterIsBetter"] == {"mae": False, "medae": False, "r2": True}
    assert (ours["table"]["mean_test_mae"] < 0).all()


def test_a_metric_on_decision_scores_equals_make_scorer(
    tmp_path: pathlib.Path,
) -> None:
    """``responseMethod: decision_function`` feeds the margin, not labels or
    probabilities, to the metric: LinearSVC has no predict_proba at all."""
    dataset = write_dataset(tmp_path, "breast_cancer")
    grid = {"clf__C": [0.001, 0.01, 0.1]}
    pipeline = {
        "pipeline": [
            {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
            {"name": "clf", "class": "sklearn.svm.LinearSVC"},
        ]
    }
    document = manifest(
        dataset,
        tmp_path / "out",
        estimator=pipeline,
        param_grid=grid,
        cv=3,
        scoring={
            "ap": {
                "metric": "average_precision_score",
                "responseMethod": "decision_function",
            }
        },
        refit="ap",
    )
    ours = _run_local(tmp_path, document)

    theirs = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("clf", LinearSVC())]),
        grid,
        scoring={
            "ap": make_scorer(
                average_precision_score, response_method="decision_function"
            )
        },
        refit="ap",
        cv=3,
    ).fit(dataset.X, dataset.y)
    assert_same_cv_results(ours["table"], theirs.cv_results_)
    assert ours["bestIndex"] == theirs.best_index_
    # Margins, not labels: on labels the same metric gives other numbers.
    on_labels = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("clf", LinearSVC())]),
        grid,
        scoring=make_scorer(average_precision_score),
        cv=3,
    ).fit(dataset.X, dataset.y)
    assert not np.array_equal(
        ours["table"]["mean_test_ap"], on_labels.cv_results_["mean_test_score"]
    )
