"""Property tests: no manifest makes kubegrid crash or hang in between.

Hypothesis writes manifests of three kinds: valid ones drawn from small
vocabularies of estimators, grids, scorers and splitters; broken ones made by
mutating a valid one (a required field deleted, a key misspelt, a value
replaced by junk of another type, by random unicode, or wrapped in a list);
and arbitrary bytes. Whatever it writes, ``kubegrid validate`` must end in a
definite state: exit 0, or exit 2 with a one-line ``error:``, never an
exception or a traceback. ``spec.parse`` on any dict must return a manifest
or raise SpecError, nothing else.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubegrid import cli
from kubegrid import spec as specs
from kubegrid.errors import SpecError

# Each estimator with parameters it takes and values valid for them.
ESTIMATORS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "sklearn.svm.SVC": {
        "C": st.floats(0.001, 1000),
        "kernel": st.sampled_from(["rbf", "linear", "poly"]),
        "gamma": st.sampled_from(["scale", "auto"]) | st.floats(1e-4, 10),
    },
    "sklearn.linear_model.LogisticRegression": {
        "C": st.floats(0.001, 1000),
        "max_iter": st.integers(50, 500),
        "fit_intercept": st.booleans(),
    },
    "sklearn.neighbors.KNeighborsClassifier": {
        "n_neighbors": st.integers(1, 15),
        "weights": st.sampled_from(["uniform", "distance"]),
    },
    "sklearn.tree.DecisionTreeClassifier": {
        "max_depth": st.none() | st.integers(1, 10),
        "min_samples_split": st.integers(2, 10),
    },
}
SCORERS = ["accuracy", "balanced_accuracy", "f1_macro", "precision_macro"]
# Scorers declared in the manifest (docs/metrics.md), valid for any labels.
DECLARED: dict[str, dict[str, Any]] = {
    "f2": {"metric": "fbeta_score", "kwargs": {"beta": 2, "average": "macro"}},
    "mcc": {"metric": "matthews_corrcoef"},
    "loss": {
        "metric": "zero_one_loss",
        "greaterIsBetter": False,
        "responseMethod": "predict",
    },
    "cost": {"costMatrix": {"labels": [0, 1], "costs": [[0, 10], [1, 0]]}},
}
SPLITTERS = ["KFold", "StratifiedKFold"]

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@st.composite
def grids(draw: st.DrawFn, estimator: str, prefix: str) -> dict[str, list[Any]]:
    params = ESTIMATORS[estimator]
    names = draw(st.lists(st.sampled_from(sorted(params)), min_size=1, unique=True))
    return {
        prefix + name: draw(st.lists(params[name], min_size=1, max_size=3))
        for name in names
    }


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A manifest ``kubegrid validate`` must accept."""
    estimator_class = draw(st.sampled_from(sorted(ESTIMATORS)))
    grid: dict[str, Any]
    if draw(st.booleans()):
        estimator: dict[str, Any] = {
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "model", "class": estimator_class},
            ]
        }
        grid = draw(grids(estimator_class, "model__"))
    else:
        estimator = {"class": estimator_class}
        grid = draw(grids(estimator_class, ""))
    spec: dict[str, Any] = {
        "dataset": {"uri": "data/train.csv", "target": "label"},
        "estimator": estimator,
        "paramGrid": grid,
        "output": {"uri": "s3://results/search"},
    }
    scorers = draw(st.lists(st.sampled_from(SCORERS), max_size=3, unique=True))
    if draw(st.booleans()):
        declared = draw(
            st.dictionaries(st.sampled_from(sorted(DECLARED)), st.just(0), min_size=1)
        )
        spec["scoring"] = {name: copy.deepcopy(DECLARED[name]) for name in declared}
        spec["scoring"] |= {name: name for name in scorers}
        spec["refit"] = draw(st.sampled_from([*spec["scoring"], False]))
    elif len(scorers) == 1:
        spec["scoring"] = scorers[0]
    elif scorers:
        spec["scoring"] = scorers
        spec["refit"] = draw(st.sampled_from([*scorers, False]))
    if draw(st.booleans()):
        spec["dataset"]["holdout"] = {
            "fraction": draw(st.floats(0.05, 0.5)),
            "randomState": draw(st.integers(0, 100)),
        }
    spec["cv"] = draw(
        st.integers(2, 10)
        | st.fixed_dictionaries(
            {"splitter": st.sampled_from(SPLITTERS), "nSplits": st.integers(2, 10)},
            optional={"shuffle": st.just(True)},
        ).map(lambda cv: cv | {"randomState": 0} if cv.get("shuffle") else cv)
    )
    if draw(st.booleans()):
        spec["search"] = {"type": "random", "nIter": draw(st.integers(1, 20))}
        spec["search"]["randomState"] = draw(st.integers(0, 2**31))
        if "C" in ESTIMATORS[estimator_class] and draw(st.booleans()):
            name = next(iter(grid)).rpartition("__")[0]
            key = f"{name}__C" if name else "C"
            grid[key] = {"distribution": "loguniform", "a": 0.01, "b": 100}
    if draw(st.booleans()):
        spec["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}}
    return {
        "apiVersion": "kubegrid.io/v1alpha1",
        "kind": "GridSearch",
        "metadata": {"name": draw(st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0]\Z"))},
        "spec": spec,
    }


def junk() -> st.SearchStrategy[Any]:
    """Values of any YAML type, including nested ones and odd unicode."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=20)
        | st.sampled_from(["", "-1", "0", "nan", ".inf", "sklearn.svm.SVCC", "a.b"])
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )


def paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a mapping key or list item inside ``node``."""
    found = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in items:
        found.append((*here, key))
        found.extend(paths(child, (*here, key)))
    return found


def misspell(name: Any, draw: st.DrawFn) -> Any:
    text = str(name)
    at = draw(st.integers(0, len(text)))
    how = draw(st.sampled_from(["drop", "double", "swap", "case"]))
    if how == "drop" and text:
        at = min(at, len(text) - 1)
        return text[:at] + text[at + 1 :]
    if how == "swap" and len(text) > 1:
        at = min(at, len(text) - 2)
        return text[:at] + text[at + 1] + text[at] + text[at + 2 :]
    if how == "case":
        return text.swapcase()
    return text[:at] + text[at : at + 1] * 2 + text[at + 1 :]


@st.composite
def broken_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with one to three mutations."""
    document = copy.deepcopy(draw(valid_manifests()))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(document)))
        parent: Any = document
        for step in where[:-1]:
            parent = parent[step]
        key = where[-1]
        how = draw(
            st.sampled_from(["delete", "misspell", "junk", "unicode", "wrap", "str"])
        )
        if how == "delete":
            del parent[key]
        elif how == "misspell" and isinstance(parent, dict):
            parent[misspell(key, draw)] = parent.pop(key)
        elif how == "unicode":
            parent[key] = draw(st.text(min_size=1, max_size=30))
        elif how == "wrap":
            parent[key] = [parent[key]]
        elif how == "str":
            parent[key] = str(parent[key])
        else:
            parent[key] = draw(junk())
        if not paths(document):
            break
    return document


def validate(
    path: pathlib.Path, text: str | bytes, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    code = cli.main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, out + err


def assert_definite(code: int, output: str) -> None:
    assert "Traceback" not in output, output
    assert code in (0, 2), output
    if code == 2:
        assert output.startswith("error: "), output
    else:
        assert output.startswith("ok: "), output


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("manifests") / "search.yaml"


@SETTINGS
@given(document=valid_manifests())
def test_valid_manifests_pass_validate(
    document: dict[str, Any],
    manifest_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every manifest drawn from the vocabularies validates with exit 0."""
    code, output = validate(manifest_path, yaml.safe_dump(document), capsys)

    assert code == 0, output
    assert_definite(code, output)


@SETTINGS
@given(document=broken_manifests())
def test_broken_manifests_end_in_a_definite_state(
    document: dict[str, Any],
    manifest_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A mutated manifest validates (0) or is refused (2, one error line);
    nothing escapes as an exception."""
    code, output = validate(manifest_path, yaml.safe_dump(document), capsys)

    assert_definite(code, output)


@SETTINGS
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_file_contents_end_in_a_definite_state(
    raw: bytes, manifest_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any bytes at all in the manifest file: exit 2 with an error line."""
    code, output = validate(manifest_path, raw, capsys)

    assert code == 2, output
    assert_definite(code, output)


@SETTINGS
@given(document=st.dictionaries(st.text(max_size=12), junk(), max_size=6))
def test_parse_raises_only_spec_errors_for_any_dict(document: dict[str, Any]) -> None:
    """``spec.parse`` on junk raises SpecError (naming a field) or nothing."""
    try:
        specs.parse(document)
    except SpecError as exc:
        assert exc.field and exc.message


@SETTINGS
@given(document=broken_manifests())
def test_parse_raises_only_spec_errors_for_broken_manifests(
    document: dict[str, Any],
) -> None:
    """``spec.parse`` on a mutated manifest returns one or raises SpecError."""
    try:
        specs.parse(document)
    except SpecError as exc:
        assert exc.field and exc.message
