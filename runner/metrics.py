"""Scorers from the manifest: named scorers, declared metrics and cost matrices.

Called by the runner (:mod:`kubegrid.context` turns ``spec.scoring`` into what
GridSearchCV takes; the holdout evaluation and the report read directions and
response methods) and by the operator through
:func:`kubegrid.estimators.check_statically`.

A declared metric names a function of ``sklearn.metrics`` and nothing else, so
every check here imports scikit-learn only, never a module the user named.
Each declared metric becomes exactly the scorer ``make_scorer`` would give for
the same function and arguments in Python, so cv_results are the same numbers.

A cost matrix becomes the average cost per sample, a loss: like scikit-learn's
``neg_*`` scorers, its scorer returns the cost negated, so cv_results holds
``-cost`` and a higher value is still better for ranking and refit.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import sklearn.metrics
from sklearn.base import BaseEstimator, clone, is_classifier, is_regressor
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import confusion_matrix, get_scorer, get_scorer_names, make_scorer
from sklearn.utils.multiclass import type_of_target

from kubegrid import spec as specs
from kubegrid.errors import DataError, SpecError

Scoring = str | list[str] | dict[str, str | specs.Metric] | None

# A metric function's name ends in one of these: they return one number.
# Curves, matrices, reports and pairwise helpers share the module but not
# that contract.
_SCALAR_SUFFIXES = ("_score", "_loss", "_error", "_deviance", "_corrcoef")

# Second arguments that take continuous scores, never hard labels.
_SCORE_ARGUMENTS = ("y_score", "y_proba", "y_prob", "pred_decision")

RESPONSE_METHODS = ("predict", "predict_proba", "decision_function")


def average_cost(
    y_true: Any, y_pred: Any, *, labels: list[Any], costs: list[list[float]]
) -> float:
    """Mean cost per sample: ``costs[i][j]`` for true ``labels[i]`` predicted as
    ``labels[j]``, summed over the confusion matrix, divided by the sample count.
    """
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    return float((counts * np.asarray(costs, dtype=float)).sum() / len(y_true))


@functools.cache
def metric_functions() -> dict[str, Callable[..., Any]]:
    """The functions of ``sklearn.metrics`` that compare targets to predictions."""
    found: dict[str, Callable[..., Any]] = {}
    for name in dir(sklearn.metrics):
        function = getattr(sklearn.metrics, name)
        if name.startswith("_") or not inspect.isfunction(function):
            continue
        first = next(iter(inspect.signature(function).parameters), None)
        if name.endswith(_SCALAR_SUFFIXES) and first in ("y_true", "labels_true"):
            found[name] = function
    return found


def entries(scoring: Scoring) -> dict[str, str | specs.Metric | None]:
    """Each metric key of cv_results and what the manifest says it is."""
    if isinstance(scoring, list):
        return {name: name for name in scoring}
    if isinstance(scoring, dict):
        return dict(scoring)
    return {"score": scoring}


def field_of(scoring: Scoring, key: str) -> str:
    """The manifest path of one scorer, for messages."""
    if isinstance(scoring, list):
        return f"spec.scoring[{scoring.index(key)}]"
    if isinstance(scoring, dict):
        return f"spec.scoring.{key}"
    return "spec.scoring"


# --------------------------------------------------------------------------
# Static checks: the manifest alone, scikit-learn's names only


def check_scoring(scoring: Scoring) -> None:
    """Every named scorer exists and every declared metric is well formed."""
    for key, entry in entries(scoring).items():
        field = field_of(scoring, key)
        if isinstance(entry, str):
            _check_scorer_name(entry, field)
        elif isinstance(entry, specs.Metric):
            check_definition(entry, field)


def _check_scorer_name(name: str, field: str) -> None:
    known = sorted(get_scorer_names())
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    declared = ""
    if name in metric_functions():
        declared = f"; to use the function {name}, write {{metric: {name}}}"
    raise SpecError(
        field,
        f"unknown scorer {name!r}; {hint}see sklearn.metrics.get_scorer_names()"
        f" for the full list{declared}",
    )


def check_definition(definition: specs.Metric, field: str) -> None:
    """A declared metric: a known function, its keyword arguments, its input."""
    if definition.cost_matrix is not None:
        _check_cost_matrix(definition, field)
        return
    assert definition.metric is not None
    function = _metric_function(definition.metric, f"{field}.metric")
    _check_kwargs(definition.metric, function, definition.kwargs, f"{field}.kwargs")
    _check_reads(definition, function, field)


def _metric_function(name: str, field: str) -> Callable[..., Any]:
    functions = metric_functions()
    if name in functions:
        return functions[name]
    close = difflib.get_close_matches(name, list(functions), n=3)
    if not close:
        close = difflib.get_close_matches(name + "_score", list(functions), n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    scorer = (
        f"; {name!r} is a scorer name: write it as a string"
        if (name in get_scorer_names())
        else ""
    )
    raise SpecError(
        field,
        f"sklearn.metrics has no metric function {name!r}; {hint}give the name "
        f"of a function such as fbeta_score or roc_auc_score{scorer}",
    )


def _check_kwargs(
    name: str, function: Callable[..., Any], kwargs: dict[str, Any], field: str
) -> None:
    # The first two arguments are the targets and the predictions the scorer
    # passes; sample weights are per row and cannot be written in a manifest.
    parameters = list(inspect.signature(function).parameters)
    reserved = {*parameters[:2], "sample_weight"}
    valid = [p for p in parameters if p not in reserved]
    for key in kwargs:
        if key in reserved:
            raise SpecError(
                f"{field}.{key}",
                f"{name} gets {key!r} from the search itself; remove it from kwargs",
            )
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(
                f"{field}.{key}",
                f"{name} has no argument {key!r}; {hint}it accepts "
                f"{', '.join(valid) or 'no keyword arguments'}",
            )


def _check_reads(
    definition: specs.Metric, function: Callable[..., Any], field: str
) -> None:
    """Score-reading metrics need scores, label metrics need labels."""
    name = definition.metric
    methods = response_methods_of(definition)
    second = list(inspect.signature(function).parameters)[1]
    reads_scores = second in _SCORE_ARGUMENTS
    if reads_scores and "predict" in methods:
        raise SpecError(
            f"{field}.responseMethod",
            f"{name} reads continuous scores ({second}), so hard labels from "
            "'predict' would give a wrong number; set responseMethod to "
            "predict_proba or decision_function",
        )
    if not reads_scores and methods != ("predict",):
        raise SpecError(
            f"{field}.responseMethod",
            f"{name} compares labels or values ({second}); set responseMethod to "
            "predict, or leave it out",
        )


def _check_cost_matrix(definition: specs.Metric, field: str) -> None:
    matrix = definition.cost_matrix
    assert matrix is not None
    extra = [
        name
        for name, value in (
            ("kwargs", definition.kwargs),
            ("greaterIsBetter", definition.greater_is_better),
        )
        if value
    ]
    if extra or definition.response_method not in (None, "predict"):
        raise SpecError(
            field,
            "a costMatrix is the average cost per sample of the predicted labels, "
            "always lower-is-better: remove "
            f"{', '.join(extra) or 'responseMethod'}",
        )
    field = f"{field}.costMatrix"
    n = len(matrix.labels)
    if len(set(map(repr, matrix.labels))) != n:
        raise SpecError(f"{field}.labels", f"labels repeat: {matrix.labels}")
    if len(matrix.costs) != n or any(len(row) != n for row in matrix.costs):
        shape = f"{len(matrix.costs)} rows of {[len(r) for r in matrix.costs]}"
        raise SpecError(
            f"{field}.costs",
            f"with {n} labels, costs must be {n} rows of {n} numbers (row: the true "
            f"label, column: the predicted one); got {shape}",
        )
    if not all(math.isfinite(c) for row in matrix.costs for c in row):
        raise SpecError(f"{field}.costs", "every cost must be a finite number")


# --------------------------------------------------------------------------
# Building scorers


# scikit-learn's naming rule for sklearn.metrics: a function ending in one of
# these returns a value to minimise; any other, a value to maximise.
_LOWER_IS_BETTER_SUFFIXES = ("_error", "_loss", "_deviance")


def wants_greater(definition: specs.Metric) -> bool:
    """Whether a declared metric rises with quality.

    ``greaterIsBetter`` when given; otherwise scikit-learn's naming rule, so
    that ``mean_squared_error`` ranks the smallest error first, as
    ``neg_mean_squared_error`` does. A cost matrix is always a loss.
    """
    if definition.cost_matrix is not None:
        return False
    if definition.greater_is_better is not None:
        return definition.greater_is_better
    assert definition.metric is not None
    return not definition.metric.endswith(_LOWER_IS_BETTER_SUFFIXES)


def response_methods_of(definition: specs.Metric) -> tuple[str, ...]:
    """The model outputs a declared metric reads, in the order it tries them."""
    method = definition.response_method or "predict"
    return (method,) if isinstance(method, str) else tuple(method)


def build(definition: specs.Metric) -> Any:
    """The scorer ``make_scorer`` gives for this definition."""
    if definition.cost_matrix is not None:
        matrix = definition.cost_matrix
        return make_scorer(
            average_cost,
            greater_is_better=False,
            labels=list(matrix.labels),
            costs=[list(row) for row in matrix.costs],
        )
    assert definition.metric is not None
    method = definition.response_method or "predict"
    return make_scorer(
        metric_functions()[definition.metric],
        greater_is_better=wants_greater(definition),
        response_method=method if isinstance(method, str) else tuple(method),
        **definition.kwargs,
    )


def for_search(scoring: Scoring) -> Any:
    """``spec.scoring`` as GridSearchCV's ``scoring`` argument.

    Names stay names, so GridSearchCV resolves them as it always does; only
    declared metrics become scorer objects.
    """
    if not isinstance(scoring, dict):
        return scoring
    return {
        key: build(entry) if isinstance(entry, specs.Metric) else entry
        for key, entry in scoring.items()
    }


def scorer(scoring: Scoring, key: str, estimator: BaseEstimator) -> Any:
    """The scorer object behind one cv_results metric key."""
    entry = entries(scoring)[key]
    if isinstance(entry, specs.Metric):
        return build(entry)
    return sklearn.metrics.check_scoring(estimator, scoring=entry)


def greater_is_better(scoring: Scoring) -> dict[str, bool]:
    """Per metric key, whether the underlying metric rises with quality.

    False for cost matrices and ``neg_*`` scorers, whose cv_results values are
    the negated loss.
    """
    directions = {}
    for key, entry in entries(scoring).items():
        if isinstance(entry, specs.Metric):
            directions[key] = wants_greater(entry)
        elif isinstance(entry, str):
            directions[key] = get_scorer(entry)._sign > 0
        else:
            directions[key] = True
    return directions


def describe(scoring: Scoring) -> dict[str, str]:
    """Per metric key, what it is in a few words, for the report and summary."""
    described = {}
    for key, entry in entries(scoring).items():
        if isinstance(entry, specs.Metric) and entry.cost_matrix is not None:
            described[key] = f"{key}: average cost"
        elif isinstance(entry, specs.Metric):
            arguments = ", ".join(f"{k}={v!r}" for k, v in entry.kwargs.items())
            described[key] = f"{key}: {entry.metric}({arguments})"
        elif isinstance(entry, str):
            described[key] = entry if key in ("score", entry) else f"{key}: {entry}"
        else:
            described[key] = "estimator's score method"
    return described


def response_methods(scoring: Scoring) -> dict[str, tuple[str, ...]]:
    """Per metric key, the model outputs its scorer tries, in order."""
    methods: dict[str, tuple[str, ...]] = {}
    for key, entry in entries(scoring).items():
        if isinstance(entry, specs.Metric):
            methods[key] = response_methods_of(entry)
        elif isinstance(entry, str):
            method = get_scorer(entry)._response_method
            methods[key] = (method,) if isinstance(method, str) else tuple(method)
    return methods


# --------------------------------------------------------------------------
# Checks that need the estimator class, then the target


def check_estimator(
    scoring: Scoring,
    estimator: BaseEstimator,
    candidates: list[dict[str, Any]] | None = None,
) -> None:
    """Every scorer reads an output the estimator has (predict_proba…)."""
    for key, methods in response_methods(scoring).items():
        if any(_offers(estimator, m, candidates) for m in methods):
            continue
        field = field_of(scoring, key)
        if isinstance(entries(scoring)[key], specs.Metric):
            field += ".responseMethod"
        has = [m for m in RESPONSE_METHODS if hasattr(estimator, m)]
        name = _final_name(estimator)
        # A single scorer's key is "score"; the manifest calls it by its name.
        entry = entries(scoring)[key]
        label = entry if isinstance(entry, str) else key
        raise SpecError(
            field,
            f"{label!r} reads {' or '.join(methods)}, which {name} does not have "
            f"(it has {', '.join(has) or 'none of them'}); choose a metric or "
            "responseMethod it offers, or an estimator that has it",
        )


def _offers(
    estimator: BaseEstimator, method: str, candidates: list[dict[str, Any]] | None
) -> bool:
    # SVC(probability=True) gains predict_proba from a parameter, which the
    # grid may set: then every candidate must have the method.
    if hasattr(estimator, method):
        return True
    if not candidates:
        return False
    return all(hasattr(clone(estimator).set_params(**c), method) for c in candidates)


def _final_name(estimator: BaseEstimator) -> str:
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if steps else estimator
    return type(final).__name__


def check_target(scoring: Scoring, y: Any) -> None:
    """Cost labels are the target's classes; declared metrics run on the target.

    A dry run of each label-reading metric on ``(y, y)`` finds a bad argument
    value (``beta: -1``, a ``pos_label`` the target lacks) before any fit,
    where otherwise every score would quietly become NaN.
    """
    classes = list(np.unique(np.asarray(y)))
    for key, entry in entries(scoring).items():
        if not isinstance(entry, specs.Metric):
            continue
        field = field_of(scoring, key)
        if entry.cost_matrix is not None:
            _check_cost_labels(entry.cost_matrix, classes, f"{field}.costMatrix")
        elif response_methods_of(entry) == ("predict",):
            _dry_run(entry, y, field)


def check_scorers_on_target(scoring: Scoring, estimator: BaseEstimator, y: Any) -> None:
    """Each scorer can read this kind of target at all.

    Each scorer is run once on a stand-in for the estimator: a dummy of the
    same kind (classifier or regressor) fitted to the target. A metric that
    cannot score this target (``roc_auc`` on ten classes, ``f1`` on string
    labels without ``pos_label``, ``accuracy`` for a regressor) fails there in
    milliseconds, where otherwise every fit would run and every score be NaN.
    A scorer that needs an output the dummy lacks is left to the search.
    """
    stand_in = _stand_in(estimator, y)
    if stand_in is None:
        return
    model, X = stand_in
    for key, entry in entries(scoring).items():
        if entry is None or (
            isinstance(entry, specs.Metric) and entry.cost_matrix is not None
        ):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scorer(scoring, key, estimator)(model, X, y)
        except (ValueError, TypeError) as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            name = entry if isinstance(entry, str) else entry.metric
            raise SpecError(
                field_of(scoring, key),
                f"{name!r} cannot score this {type_of_target(y)} target: "
                f"{lines[-1]}{_scorer_hint(entry, str(exc), estimator)}",
            ) from None
        except AttributeError:
            continue


def _stand_in(estimator: BaseEstimator, y: Any) -> tuple[Any, Any] | None:
    """A dummy model of the estimator's kind fitted to ``y``, and its input."""
    if is_classifier(estimator):
        model: Any = DummyClassifier(strategy="prior")
    elif is_regressor(estimator):
        model = DummyRegressor()
    else:
        return None
    X = np.zeros((len(y), 1))
    try:
        return model.fit(X, y), X
    except (ValueError, TypeError):
        return None


def _scorer_hint(entry: str | specs.Metric, message: str, estimator: Any) -> str:
    """What to write instead, for the usual ways a scorer misfits a target."""
    names = set(get_scorer_names())
    if "pos_label" in message:
        return (
            "; name the positive class: declare the metric with "
            "kwargs: {pos_label: <one of the classes>} (docs/metrics.md)"
        )
    if is_regressor(estimator):
        return (
            f"; {_final_name(estimator)} is a regressor: use a regression scorer "
            "such as r2 or neg_mean_squared_error"
        )
    if isinstance(entry, str) and f"{entry}_ovr" in names:
        return f"; for more than two classes use {entry}_ovr or {entry}_ovo"
    if isinstance(entry, str) and f"{entry}_macro" in names:
        return f"; for more than two classes use {entry}_macro or {entry}_weighted"
    return ""


def _check_cost_labels(
    matrix: specs.CostMatrix, classes: list[Any], field: str
) -> None:
    given = {_plain(v) for v in matrix.labels}
    present = {_plain(v) for v in classes}
    if given != present:
        missing, unknown = (
            sorted(present - given, key=repr),
            sorted(given - present, key=repr),
        )
        raise DataError(
            f"{field}.labels",
            f"the labels must be the target's classes {sorted(present, key=repr)}; "
            f"missing {missing}, not in the target {unknown}",
        )


def _dry_run(definition: specs.Metric, y: Any, field: str) -> None:
    assert definition.metric is not None
    function = metric_functions()[definition.metric]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            function(y, y, **definition.kwargs)
        except (ValueError, TypeError) as exc:
            raise SpecError(
                f"{field}.kwargs", f"{definition.metric} rejects these arguments: {exc}"
            ) from None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
