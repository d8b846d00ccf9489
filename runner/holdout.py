"""The test set kept out of the search, and what the refit model does on it.

Two callers:

* :func:`kubegrid.context.prepare`, in every shard pod and in the reducer,
  calls :func:`split`: the search (its folds, every fit, the refit) sees the
  training rows only. The split is seeded, so every process holds out the
  very same rows;
* :func:`kubegrid.reducer.reduce` calls :func:`evaluate` after the refit: the
  best model is scored on the test set with every metric, its confusion
  matrix, classification report (or residuals) and curves are kept, and,
  when ``spec.threshold`` asks, its decision threshold is tuned with
  scikit-learn's ``TunedThresholdClassifierCV`` on the training rows.

The result is the JSON document ``holdout.json``; the report draws from it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import TunedThresholdClassifierCV, train_test_split

from kubegrid import data as datasets
from kubegrid import metrics, storage
from kubegrid import spec as specs
from kubegrid.errors import DataError, SpecError

logger = logging.getLogger(__name__)

# Curves are kept to this many points: enough for a smooth line at report
# size, small enough that holdout.json stays a few hundred kilobytes.
CURVE_POINTS = 400


# --------------------------------------------------------------------------
# Checks before any fit


def check_statically(spec: specs.GridSearchSpec) -> None:
    """Holdout and threshold settings that the manifest alone can refute."""
    holdout = spec.dataset.holdout
    if holdout and holdout.fraction is not None and holdout.random_state is None:
        raise SpecError(
            "spec.dataset.holdout.randomState",
            "every shard must hold out the same rows, so the draw needs a seed; "
            "set randomState to any integer, for example 0",
        )
    if spec.threshold is not None:
        _check_threshold(spec, spec.threshold)


def _check_threshold(spec: specs.GridSearchSpec, threshold: specs.Threshold) -> None:
    field = "spec.threshold.metric"
    names = spec.metric_names
    if threshold.metric not in names:
        raise SpecError(
            field, f"{threshold.metric!r} is not one of the scorers {names}"
        )
    if not spec.refit:
        raise SpecError(
            "spec.threshold",
            "tuning the threshold starts from the refit best model; set refit",
        )
    if spec.dataset.holdout is None:
        raise SpecError(
            "spec.threshold",
            "the tuned and the default threshold are compared on the test set; "
            "add dataset.holdout (a fraction such as 0.25, or a uri)",
        )
    methods = metrics.response_methods(spec.scoring).get(threshold.metric)
    if methods is not None and methods != ("predict",):
        raise SpecError(
            field,
            f"{threshold.metric!r} reads {' or '.join(methods)}, which no decision "
            "threshold changes; name a metric of predicted labels (a costMatrix, "
            "fbeta_score…)",
        )


def check_estimator(spec: specs.GridSearchSpec, estimator: BaseEstimator) -> None:
    """Threshold tuning needs a classifier."""
    if spec.threshold is not None and not is_classifier(estimator):
        raise SpecError(
            "spec.threshold",
            f"{type(estimator).__name__} is not a classifier; only a binary "
            "classifier has a decision threshold",
        )


def check_target(spec: specs.GridSearchSpec, y: Any) -> None:
    """Threshold tuning needs exactly two classes."""
    n_classes = len(np.unique(np.asarray(y)))
    if spec.threshold is not None and n_classes != 2:
        raise DataError(
            "spec.threshold",
            f"only a binary target has a decision threshold; this one has "
            f"{n_classes} classes",
        )


# --------------------------------------------------------------------------
# Splitting


def split(
    spec: specs.GridSearchSpec, data: datasets.Data, estimator: BaseEstimator
) -> tuple[datasets.Data, datasets.Data | None]:
    """The training rows the search uses, and the test rows, if any."""
    holdout = spec.dataset.holdout
    if holdout is None:
        return data, None
    if holdout.uri is not None:
        return data, _read(spec, holdout.uri, data.checksum)

    # train_test_split as a user would call it, so GridSearchCV on its output
    # sees exactly these rows in this order.
    stratify = data.y if holdout.stratify and is_classifier(estimator) else None
    arrays = [data.X, data.y] + ([data.groups] if data.groups is not None else [])
    try:
        parts = train_test_split(
            *arrays,
            test_size=holdout.fraction,
            random_state=holdout.random_state,
            stratify=stratify,
        )
    except ValueError as exc:
        raise DataError(
            "spec.dataset.holdout.fraction", f"cannot hold out these rows: {exc}"
        ) from None
    train = parts[0::2]
    test = parts[1::2]
    groups = (train[2], test[2]) if data.groups is not None else (None, None)
    return (
        datasets.Data(train[0], train[1], groups[0], data.checksum),
        datasets.Data(test[0], test[1], groups[1], data.checksum),
    )


def _read(spec: specs.GridSearchSpec, uri: str, checksum: str) -> datasets.Data:
    # The same columns, read the same way; errors name the holdout field.
    fmt = specs.Dataset(uri=uri, target=spec.dataset.target).resolved_format
    field = "spec.dataset.holdout.uri"
    try:
        frame, _ = datasets.read_frame(uri, fmt, storage.location_of(spec))
        return datasets.split_columns(frame, spec.dataset, checksum)
    except DataError as exc:
        raise DataError(field, f"the holdout dataset: {exc.message}") from None


# --------------------------------------------------------------------------
# Evaluating the refit model


def evaluate(
    spec: specs.GridSearchSpec,
    model: BaseEstimator,
    train: datasets.Data,
    test: datasets.Data,
) -> tuple[dict[str, Any], BaseEstimator | None]:
    """``holdout.json``'s content, and the threshold-tuned model if asked."""
    scores = _scores(spec, model, test)
    directions = metrics.greater_is_better(spec.scoring)
    result: dict[str, Any] = {
        "nSamples": len(test.y),
        "scores": scores,
        "metricValues": {
            k: (v if directions.get(k, True) else -v) for k, v in scores.items()
        },
        "greaterIsBetter": directions,
    }
    y_pred = model.predict(test.X)
    if is_classifier(model):
        result |= _classification(model, test, y_pred)
    else:
        result["residuals"] = _residuals(test.y, y_pred)
    tuned = None
    if spec.threshold is not None:
        tuned, result["threshold"] = tune_threshold(spec, model, train, test)
    return result, tuned


def brief(evaluation: dict[str, Any]) -> dict[str, Any]:
    """What summary.json repeats of ``holdout.json``: the numbers, no tables."""
    keys = ("nSamples", "scores", "metricValues")
    out = {k: evaluation[k] for k in keys}
    threshold = evaluation.get("threshold")
    if threshold:
        out["threshold"] = {
            k: threshold[k] for k in ("metric", "default", "tuned", "positiveLabel")
        }
    return out


def _scores(
    spec: specs.GridSearchSpec, model: BaseEstimator, test: datasets.Data
) -> dict[str, float]:
    return {
        key: float(metrics.scorer(spec.scoring, key, model)(model, test.X, test.y))
        for key in spec.metric_names
    }


def _classification(
    model: BaseEstimator, test: datasets.Data, y_pred: Any
) -> dict[str, Any]:
    labels = list(model.classes_)
    result: dict[str, Any] = {
        "task": "classification",
        "labels": [_plain(v) for v in labels],
        "confusionMatrix": confusion_matrix(test.y, y_pred, labels=labels).tolist(),
        "classificationReport": classification_report(
            test.y, y_pred, labels=labels, output_dict=True, zero_division=0
        ),
    }
    if len(labels) == 2:
        curves = _binary_curves(model, test)
        if curves:
            result["curves"] = curves
    return result


def _binary_curves(model: BaseEstimator, test: datasets.Data) -> dict[str, Any] | None:
    """ROC and precision-recall curves of the positive class (``classes_[1]``)."""
    scores, method = _positive_scores(model, test.X)
    if scores is None:
        return None
    positive = model.classes_[1]
    fpr, tpr, _ = roc_curve(test.y, scores, pos_label=positive)
    precision, recall, _ = precision_recall_curve(test.y, scores, pos_label=positive)
    is_positive = np.asarray(test.y) == positive
    return {
        "positiveLabel": _plain(positive),
        "responseMethod": method,
        "roc": {
            "fpr": _thin(fpr),
            "tpr": _thin(tpr),
            "auc": float(roc_auc_score(is_positive, scores)),
        },
        "precisionRecall": {
            "precision": _thin(precision),
            "recall": _thin(recall),
            "averagePrecision": float(average_precision_score(is_positive, scores)),
            "prevalence": float(is_positive.mean()),
        },
    }


def _positive_scores(model: BaseEstimator, X: Any) -> tuple[Any, str | None]:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1], "predict_proba"
    if hasattr(model, "decision_function"):
        return model.decision_function(X), "decision_function"
    return None, None


def _residuals(y_true: Any, y_pred: Any) -> dict[str, float]:
    residuals = np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)
    quantiles = np.percentile(residuals, [5, 25, 50, 75, 95])
    return {
        "mean": float(residuals.mean()),
        "std": float(residuals.std()),
        "meanAbsolute": float(np.abs(residuals).mean()),
        "rootMeanSquared": float(np.sqrt((residuals**2).mean())),
        "maxAbsolute": float(np.abs(residuals).max()),
        **{
            f"p{q:02d}": float(v)
            for q, v in zip((5, 25, 50, 75, 95), quantiles, strict=True)
        },
    }


# --------------------------------------------------------------------------
# Threshold tuning


def tune_threshold(
    spec: specs.GridSearchSpec,
    model: BaseEstimator,
    train: datasets.Data,
    test: datasets.Data,
) -> tuple[BaseEstimator, dict[str, Any]]:
    """Tune the model's threshold on the training rows; compare both on the test.

    TunedThresholdClassifierCV refits a clone of the model on all training
    rows (the same fit as the refit) and picks the threshold that maximises
    the scorer's cross-validated value; the test set decides nothing here.
    """
    threshold = spec.threshold
    assert threshold is not None
    key = threshold.metric
    scorer = metrics.scorer(spec.scoring, key, model)
    tuned = TunedThresholdClassifierCV(
        clone(model), scoring=scorer, thresholds=threshold.thresholds, cv=threshold.cv
    ).fit(train.X, train.y)
    sign = 1.0 if metrics.greater_is_better(spec.scoring)[key] else -1.0
    _, method = _positive_scores(model, test.X)
    default_score = float(scorer(model, test.X, test.y))
    tuned_score = float(scorer(tuned, test.X, test.y))
    return tuned, {
        "metric": key,
        "responseMethod": method,
        "positiveLabel": _plain(
            getattr(scorer, "_kwargs", {}).get("pos_label", model.classes_[1])
        ),
        "default": {
            "threshold": 0.5 if method == "predict_proba" else 0.0,
            "score": default_score,
            "metricValue": sign * default_score,
        },
        "tuned": {
            "threshold": float(tuned.best_threshold_),
            "score": tuned_score,
            "metricValue": sign * tuned_score,
            "cvScore": float(tuned.best_score_),
        },
        "confusionMatrix": confusion_matrix(
            test.y, tuned.predict(test.X), labels=list(model.classes_)
        ).tolist(),
    }


def _thin(values: np.ndarray) -> list[float]:
    """At most CURVE_POINTS points, the first and last always kept."""
    if len(values) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(values) - 1, CURVE_POINTS).astype(int))
        values = values[keep]
    return [float(v) for v in values]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
