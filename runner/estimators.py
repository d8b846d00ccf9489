"""Turning the manifest's estimator, scorers and splitter into scikit-learn objects.

Two callers with two trust levels:

* the runner (CLI and pods) calls :func:`build` and friends, which import the
  classes the manifest names, as the user asked;
* the operator calls :func:`check_statically`, which never imports a module the
  user named: it only looks names up in scikit-learn's own catalogue of
  estimators, and leaves anything else for the pods to check.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

from pydantic.alias_generators import to_camel
from sklearn.base import BaseEstimator, is_classifier
from sklearn.model_selection import check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import (
    InvalidParameterError,
    Options,
    validate_parameter_constraints,
)

from kubegrid import holdout, metrics, planning
from kubegrid import spec as specs
from kubegrid.errors import SpecError

logger = logging.getLogger(__name__)

# camelCase CV fields → the keyword scikit-learn's splitters take.
_CV_KWARGS = {
    "n_splits": "n_splits",
    "n_repeats": "n_repeats",
    "shuffle": "shuffle",
    "random_state": "random_state",
    "test_size": "test_size",
    "train_size": "train_size",
    "max_train_size": "max_train_size",
    "gap": "gap",
}


def import_class(path: str, field: str) -> type:
    """Import ``package.module.Class``, as the user's manifest names it."""
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        sibling = _close_module(module_name)
        hint = f"did you mean {sibling}.{class_name}? " if sibling else ""
        raise SpecError(
            field,
            f"cannot import module {module_name!r} for {path!r} ({exc}); {hint}check "
            "the spelling, or use an image that has the package installed",
        ) from None
    try:
        found = getattr(module, class_name)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(class_name, names, n=1)
        hint = f"; did you mean {module_name}.{close[0]}?" if close else ""
        raise SpecError(
            field, f"module {module_name!r} has no {class_name!r}{hint}"
        ) from None
    if not (isinstance(found, type) and hasattr(found, "get_params")):
        raise SpecError(field, f"{path!r} is not a scikit-learn estimator class")
    return found


def _close_module(module_name: str) -> str | None:
    """A sibling of a misspelt module (``sklearn.svmm`` → ``sklearn.svm``)."""
    parent, _, name = module_name.rpartition(".")
    try:
        package = importlib.import_module(parent) if parent else None
    except ImportError:
        return None
    search_path = getattr(package, "__path__", None)
    if search_path is None:
        return None
    siblings = [m.name for m in pkgutil.iter_modules(search_path)]
    siblings = [m for m in siblings if not m.startswith("_")]
    close = difflib.get_close_matches(name, siblings, n=1)
    return f"{parent}.{close[0]}" if close else None


def build(
    estimator: specs.Estimator,
    resolve: Callable[[str, str], type] = import_class,
) -> BaseEstimator:
    """The unfitted estimator or Pipeline the manifest describes.

    ``resolve(path, field)`` finds each class; by default it imports it.
    """
    if estimator.pipeline is None:
        assert estimator.class_ is not None
        cls = resolve(estimator.class_, "spec.estimator.class")
        return _instantiate(cls, estimator.params, "spec.estimator.params")
    steps = []
    for i, step in enumerate(estimator.pipeline):
        field = f"spec.estimator.pipeline[{i}]"
        cls = resolve(step.class_, f"{field}.class")
        steps.append((step.name, _instantiate(cls, step.params, f"{field}.params")))
    return Pipeline(steps)


def _instantiate(cls: type, params: dict[str, Any], field: str) -> BaseEstimator:
    valid = _constructor_params(cls)
    for name in params:
        if name not in valid:
            raise SpecError(
                f"{field}.{name}", _unknown_param(cls.__name__, name, valid)
            )
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise SpecError(field, f"{cls.__name__} rejected these params: {exc}") from None


def _constructor_params(cls: type) -> list[str]:
    signature = inspect.signature(cls)
    return [
        name
        for name, p in signature.parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _unknown_param(owner: str, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{owner} has no parameter {name!r}; {hint}valid names: {', '.join(valid)}"


def check_grid_names(
    estimator: BaseEstimator, grid: dict[str, Any] | list[dict[str, Any]]
) -> None:
    """Every grid key must be a parameter of the estimator (``step__param`` too)."""
    valid = sorted(estimator.get_params(deep=True))
    owner = type(estimator).__name__
    grids = grid if isinstance(grid, list) else [grid]
    for i, one in enumerate(grids):
        prefix = f"spec.paramGrid[{i}]" if isinstance(grid, list) else "spec.paramGrid"
        for name in one:
            if name not in valid:
                raise SpecError(f"{prefix}.{name}", _unknown_param(owner, name, valid))


def check_grid_values(
    estimator: BaseEstimator,
    grid: dict[str, Any] | list[dict[str, Any]],
    drawn: list[dict[str, Any]] | None = None,
) -> None:
    """Every listed grid value must be one its estimator's own checks accept.

    scikit-learn checks a parameter's type and range only when ``fit`` starts,
    so a misspelt value would otherwise fail every fit of its candidates. The
    same constraints (each estimator's ``_parameter_constraints``) are asked
    here, without fitting anything. A grid search fits every listed value; for
    a random search, ``drawn`` are the candidates it samples, and only values
    among the first few hundred are checked. Values drawn from a distribution
    are left alone, and so are estimators that declare no constraints.
    Raises SpecError naming ``spec.paramGrid.<name>`` and scikit-learn's rule.
    """
    owners = {"": estimator, **estimator.get_params(deep=True)}
    for field, name, value in _listed_values(grid, drawn):
        prefix, _, param = name.rpartition("__")
        _check_value(owners.get(prefix), param, value, field)


def check_fixed_values(
    estimator: BaseEstimator,
    spec: specs.Estimator,
    grid: dict[str, Any] | list[dict[str, Any]],
) -> None:
    """Every fixed parameter must be one its estimator's own checks accept.

    As :func:`check_grid_values`, for ``spec.estimator.params`` and each
    pipeline step's ``params``. A fixed value the grid always replaces is
    never fitted, so it is left alone. Raises SpecError naming the field.
    """
    grids = grid if isinstance(grid, list) else [grid]
    # Replaced only where every grid of a list sets it.
    searched = set.intersection(*(set(one) for one in grids)) if grids else set()
    fixed = [("", estimator, spec.params, "spec.estimator.params")]
    for i, step in enumerate(spec.pipeline or []):
        owner = estimator.named_steps[step.name]
        field = f"spec.estimator.pipeline[{i}].params"
        fixed.append((f"{step.name}__", owner, step.params, field))
    for prefix, owner, params, field in fixed:
        for name, value in params.items():
            if prefix + name not in searched:
                _check_value(owner, name, value, f"{field}.{name}")


# Enough candidates of a random search to meet each listed value in all but
# contrived grids, few enough that walking them takes milliseconds.
_DRAWN_TO_CHECK = 500


def _listed_values(
    grid: dict[str, Any] | list[dict[str, Any]], drawn: list[dict[str, Any]] | None
) -> Iterator[tuple[str, str, Any]]:
    """(field, name, value) for each distinct value a list in the grid gives."""
    # Values are told apart by repr, as cv_results does: 1, 1.0 and True differ.
    used = None
    if drawn is not None:
        used = {(k, repr(v)) for c in drawn[:_DRAWN_TO_CHECK] for k, v in c.items()}
    seen: set[tuple[str, str]] = set()
    grids = grid if isinstance(grid, list) else [grid]
    for i, one in enumerate(grids):
        prefix = f"spec.paramGrid[{i}]" if isinstance(grid, list) else "spec.paramGrid"
        for name, values in one.items():
            if not isinstance(values, list):
                continue  # a distribution: scipy draws the values
            for value in values:
                key = (name, repr(value))
                if key not in seen and (used is None or key in used):
                    seen.add(key)
                    yield f"{prefix}.{name}", name, value


def _check_value(owner: Any, param: str, value: Any, field: str) -> None:
    """Check one value against the constraints its owner declares for it.

    Only this parameter's constraints are asked, not the whole of
    ``_validate_params()``: a bad fixed parameter would otherwise be blamed
    on the grid value, and stop the check before it reached this one.
    """
    constraints = getattr(owner, "_parameter_constraints", None)
    if not isinstance(constraints, dict) or param not in constraints:
        return
    owner_name = type(owner).__name__
    try:
        validate_parameter_constraints(
            {param: constraints[param]}, {param: value}, caller_name=owner_name
        )
    except InvalidParameterError as exc:
        hint = _option_hint(constraints[param], value)
        raise SpecError(field, f"{exc}{hint}") from None


def _option_hint(constraints: Any, value: Any) -> str:
    """A sentence naming the option a misspelt string value is closest to."""
    if not isinstance(value, str) or not isinstance(constraints, list):
        return ""
    options = [
        option
        for constraint in constraints
        if isinstance(constraint, Options)
        for option in constraint.options
        if isinstance(option, str) and option not in constraint.deprecated
    ]
    close = difflib.get_close_matches(value, sorted(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_scoring(scoring: metrics.Scoring) -> None:
    """Every scorer name is one scikit-learn knows; declared metrics are sound."""
    metrics.check_scoring(scoring)


def build_cv(cv: int | specs.CV, estimator: BaseEstimator, y: Any) -> Any:
    """The splitter GridSearchCV would use for this cv spec and target."""
    if isinstance(cv, int):
        # An integer means what it means to GridSearchCV: stratified folds for
        # a classifier on a classification target, plain KFold otherwise.
        return check_cv(cv, y, classifier=is_classifier(estimator))
    import sklearn.model_selection as ms

    cls = getattr(ms, cv.splitter)
    accepted = _constructor_params(cls)
    kwargs = {}
    for attr, kwarg in _CV_KWARGS.items():
        value = getattr(cv, attr)
        if value is None:
            continue
        if kwarg not in accepted:
            field = to_camel(attr)
            raise SpecError(
                f"spec.cv.{field}",
                f"{cv.splitter} takes no {field!r}; it accepts "
                f"{', '.join(to_camel(a) for a in accepted) or 'no arguments'}",
            )
        # Test and train sizes above 1 are counts, below 1 are fractions.
        if kwarg in ("test_size", "train_size") and float(value).is_integer():
            value = int(value) if value >= 1 else value
        kwargs[kwarg] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise SpecError("spec.cv", f"{cv.splitter}: {exc}") from None


def check_reproducible(spec: specs.GridSearchSpec) -> None:
    """Random choices must be seeded, or each pod would draw different ones."""
    if spec.search.type == "random" and spec.search.random_state is None:
        raise SpecError(
            "spec.search.randomState",
            "a random search needs a seed so that every shard samples the same "
            "candidates; set randomState to any integer, for example 0",
        )
    cv = spec.cv
    if isinstance(cv, specs.CV) and cv.random_state is None:
        shuffles = cv.splitter in (
            "ShuffleSplit",
            "StratifiedShuffleSplit",
            "RepeatedKFold",
            "RepeatedStratifiedKFold",
        ) or bool(cv.shuffle)
        if shuffles:
            raise SpecError(
                "spec.cv.randomState",
                f"{cv.splitter} shuffles, so every shard needs the same seed to see "
                "the same folds; set randomState to any integer, for example 0",
            )


@functools.cache
def sklearn_catalogue() -> dict[str, type]:
    """scikit-learn's own estimators by public and private import path."""
    from sklearn.utils.discovery import all_estimators

    catalogue: dict[str, type] = {}
    for name, cls in all_estimators():
        module = cls.__module__
        catalogue[f"{module}.{name}"] = cls
        public = ".".join(p for p in module.split(".") if not p.startswith("_"))
        catalogue[f"{public}.{name}"] = cls
    catalogue["sklearn.pipeline.Pipeline"] = Pipeline
    return catalogue


def check_statically(
    spec: specs.GridSearchSpec, drawn: list[dict[str, Any]] | None = None
) -> None:
    """Checks that import no user-named module, for the operator.

    ``drawn``: a random search's candidates, when the caller has listed them.

    Scorers, seeds and splitter arguments are always checked. Estimator
    classes, parameter names and values are checked only when scikit-learn's
    catalogue has every class; any other class (xgboost, a user's package) is
    left for the pods to import.
    """
    check_scoring(spec.scoring)
    check_reproducible(spec)
    holdout.check_statically(spec)
    catalogue = sklearn_catalogue()
    paths = spec.estimator.class_paths()
    for i, path in enumerate(paths):
        if path not in catalogue and path.split(".")[0] == "sklearn":
            field = (
                "spec.estimator.class"
                if spec.estimator.pipeline is None
                else f"spec.estimator.pipeline[{i}].class"
            )
            close = difflib.get_close_matches(path, list(catalogue), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(field, f"scikit-learn has no estimator {path!r}{hint}")
    if all(path in catalogue for path in paths):
        estimator = build(spec.estimator, resolve=lambda path, _: catalogue[path])
        check_grid_names(estimator, spec.param_grid)
        if drawn is None and spec.search.type == "random":
            drawn = planning.candidates(spec)
        check_grid_values(estimator, spec.param_grid, drawn)
        check_fixed_values(estimator, spec.estimator, spec.param_grid)
        metrics.check_estimator(spec.scoring, estimator)
        holdout.check_estimator(spec, estimator)
    if isinstance(spec.cv, specs.CV):
        build_cv(spec.cv, Pipeline([("x", None)]), None)
