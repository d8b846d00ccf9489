"""Bad metric, holdout and threshold settings are refused before any fit.

Each case names the manifest field and says what to write instead. The
static checks (what the operator runs, importing no user module) and the
runner's checks (which build the estimator) are both exercised.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest

from kubegrid import cli, context, estimators
from kubegrid import spec as specs
from kubegrid.errors import DataError, SpecError
from tests.engine.searches import manifest, write_dataset, write_manifest

BASE: dict[str, Any] = {
    "apiVersion": "kubegrid.io/v1alpha1",
    "kind": "GridSearch",
    "metadata": {"name": "checks"},
    "spec": {
        "dataset": {"uri": "data.csv", "target": "target"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "paramGrid": {"C": [0.1, 1.0]},
        "output": {"uri": "out"},
        "refit": "m",
    },
}


def document(**spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["spec"].update(copy.deepcopy(spec))
    return out


def static_error(**spec: Any) -> SpecError:
    with pytest.raises(SpecError) as caught:
        estimators.check_statically(specs.parse(document(**spec)).spec)
    return caught.value


def runner_error(**spec: Any) -> SpecError:
    with pytest.raises(SpecError) as caught:
        context.check_without_data(specs.parse(document(**spec)))
    return caught.value


def test_unknown_metric_function_suggests_close_names() -> None:
    error = static_error(scoring={"m": {"metric": "fbeta"}})
    assert error.field == "spec.scoring.m.metric"
    assert "'fbeta_score'" in error.message


def test_scorer_name_given_as_metric_function_says_to_write_a_string() -> None:
    error = static_error(scoring={"m": {"metric": "roc_auc"}})
    assert "write it as a string" in error.message


def test_wrong_keyword_argument_is_checked_against_the_signature() -> None:
    error = static_error(
        scoring={"m": {"metric": "fbeta_score", "kwargs": {"betta": 2}}}
    )
    assert error.field == "spec.scoring.m.kwargs.betta"
    assert "did you mean 'beta'" in error.message


def test_targets_cannot_be_passed_as_keyword_arguments() -> None:
    error = static_error(scoring={"m": {"metric": "f1_score", "kwargs": {"y_pred": 1}}})
    assert error.field == "spec.scoring.m.kwargs.y_pred"


def test_score_metric_on_hard_labels_is_refused() -> None:
    """roc_auc reads scores, never the labels predict gives."""
    error = static_error(scoring={"m": {"metric": "roc_auc_score"}})
    assert error.field == "spec.scoring.m.responseMethod"
    assert "predict_proba or decision_function" in error.message


def test_label_metric_on_probabilities_is_refused() -> None:
    error = static_error(
        scoring={"m": {"metric": "f1_score", "responseMethod": "predict_proba"}}
    )
    assert error.field == "spec.scoring.m.responseMethod"


def test_response_method_the_estimator_lacks_is_refused_statically() -> None:
    """LinearSVC has no predict_proba; the catalogue knows it, no import."""
    error = static_error(
        estimator={"class": "sklearn.svm.LinearSVC"},
        scoring={"m": {"metric": "roc_auc_score", "responseMethod": "predict_proba"}},
    )
    assert error.field == "spec.scoring.m.responseMethod"
    assert "LinearSVC" in error.message and "decision_function" in error.message


def test_named_scorer_the_estimator_cannot_serve_is_refused_by_the_runner() -> None:
    error = runner_error(
        estimator={
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "svm", "class": "sklearn.svm.LinearSVC"},
            ]
        },
        paramGrid={"svm__C": [1.0]},
        scoring={"m": "neg_log_loss"},
    )
    assert error.field == "spec.scoring.m"
    assert "predict_proba" in error.message


def test_a_parameter_in_the_grid_can_provide_the_method() -> None:
    """SVC gains predict_proba when every candidate sets probability."""
    context.check_without_data(
        specs.parse(
            document(
                estimator={"class": "sklearn.svm.SVC"},
                paramGrid={"probability": [True], "C": [1.0]},
                scoring={
                    "m": {
                        "metric": "log_loss",
                        "responseMethod": "predict_proba",
                        "greaterIsBetter": False,
                    }
                },
            )
        )
    )


def test_cost_matrix_must_be_square() -> None:
    error = static_error(
        scoring={"m": {"costMatrix": {"labels": [0, 1], "costs": [[0, 1], [2]]}}}
    )
    assert error.field == "spec.scoring.m.costMatrix.costs"
    assert "2 rows of 2" in error.message


def test_cost_matrix_takes_no_direction() -> None:
    error = static_error(
        scoring={
            "m": {
                "greaterIsBetter": True,
                "costMatrix": {"labels": [0, 1], "costs": [[0, 1], [1, 0]]},
            }
        }
    )
    assert "greaterIsBetter" in error.message


def test_unknown_definition_field_is_named() -> None:
    with pytest.raises(SpecError) as caught:
        specs.parse(document(scoring={"m": {"metric": "f1_score", "kwarg": {}}}))
    assert caught.value.field == "spec.scoring.m.kwarg"
    assert "did you mean 'kwargs'" in caught.value.message


def test_threshold_needs_a_label_metric_a_holdout_and_a_classifier() -> None:
    labels = {"m": {"costMatrix": {"labels": [0, 1], "costs": [[0, 1], [5, 0]]}}}
    assert static_error(scoring=labels, threshold={"metric": "x"}).field == (
        "spec.threshold.metric"
    )
    assert "holdout" in static_error(scoring=labels, threshold={"metric": "m"}).message
    auc = {"m": {"metric": "roc_auc_score", "responseMethod": "predict_proba"}}
    holdout = {"uri": "test.csv"}
    spec = {"dataset": {"uri": "d.csv", "target": "target", "holdout": holdout}}
    error = static_error(scoring=auc, threshold={"metric": "m"}, **spec)
    assert "no decision threshold changes" in error.message
    error = static_error(
        scoring={"m": "r2"},
        threshold={"metric": "m"},
        estimator={"class": "sklearn.linear_model.Ridge"},
        paramGrid={"alpha": [1.0]},
        **spec,
    )
    assert "not a classifier" in error.message


def test_unseeded_holdout_fraction_is_refused() -> None:
    dataset = {
        "uri": "d.csv",
        "target": "target",
        "holdout": {"fraction": 0.2, "randomState": None},
    }
    error = static_error(dataset=dataset, scoring="accuracy", refit=True)
    assert error.field == "spec.dataset.holdout.randomState"


def test_cost_labels_must_be_the_target_classes(tmp_path: pathlib.Path) -> None:
    dataset = write_dataset(tmp_path, "breast_cancer", rows=120)
    bad = manifest(
        dataset,
        tmp_path / "out",
        estimator={"class": "sklearn.linear_model.LogisticRegression"},
        param_grid={"C": [1.0]},
        scoring={"m": {"costMatrix": {"labels": [1, 2], "costs": [[0, 1], [1, 0]]}}},
        refit="m",
    )
    with pytest.raises(DataError) as caught:
        context.prepare(specs.parse(bad))
    assert caught.value.field == "spec.scoring.m.costMatrix.labels"
    assert "missing [0]" in caught.value.message


def test_bad_argument_value_is_found_by_a_dry_run(tmp_path: pathlib.Path) -> None:
    """pos_label 7 is no class: refused at prepare, not as NaN scores later."""
    dataset = write_dataset(tmp_path, "breast_cancer", rows=120)
    bad = manifest(
        dataset,
        tmp_path / "out",
        estimator={"class": "sklearn.linear_model.LogisticRegression"},
        param_grid={"C": [1.0]},
        scoring={"m": {"metric": "f1_score", "kwargs": {"pos_label": 7}}},
        refit="m",
    )
    path = write_manifest(tmp_path, bad)
    assert cli.main(["validate", "--data", str(path)]) == 2
    with pytest.raises(SpecError) as caught:
        context.prepare(specs.parse(bad))
    assert caught.value.field == "spec.scoring.m.kwargs"


def test_example_manifest_validates(capsys: pytest.CaptureFixture[str]) -> None:
    example = pathlib.Path(__file__).parents[2] / "examples/breast-cancer-cost.yaml"
    assert cli.main(["validate", str(example)]) == 0
    # Without --data the dataset is not read, and the answer says so.
    assert "add --data to check the dataset" in capsys.readouterr().out
    estimators.check_statically(specs.load(example).spec)


def test_a_single_scorer_can_be_named_by_its_own_name() -> None:
    """With scoring: accuracy, threshold.metric: accuracy means that scorer."""
    parsed = specs.parse(
        document(
            scoring="accuracy",
            refit=True,
            dataset={
                "uri": "data.csv",
                "target": "target",
                "holdout": {"fraction": 0.25},
            },
            threshold={"metric": "accuracy"},
        )
    )
    assert parsed.spec.threshold is not None
    assert parsed.spec.threshold.metric == "score"
    estimators.check_statically(parsed.spec)
