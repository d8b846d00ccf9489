"""Bad input that tests/engine/test_bad_input.py leaves out.

Mistakes in the manifest alone are caught by ``kubegrid validate``, the check
that needs no data (what the operator can run before any Job exists); the
ones in the data by ``kubegrid run``. Each must end with exit code 2, no
traceback, and a message naming the field, the bad value and the fix.
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubegrid import cli
from tests.engine.searches import manifest, write_dataset, write_manifest

# Seven SVC parameters with ten values each: 10**7 candidates.
SVC_PARAMS = ("C", "gamma", "degree", "coef0", "tol", "cache_size", "max_iter")

PIPELINE = {
    "pipeline": [
        {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
        {"name": "svc", "class": "sklearn.svm.SVC"},
    ]
}

# (id, {dotted path in the manifest: value to put there}, field named, hints)
MANIFEST_MISTAKES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    (
        "huge-grid",
        {"spec.paramGrid": {f"svc__{p}": list(range(10)) for p in SVC_PARAMS}},
        "spec.paramGrid",
        ("10000000 candidates", "limit of 100000", "raise search.maxCandidates"),
    ),
    (
        "huge-random-search",
        {
            "spec.search": {"type": "random", "nIter": 10_000_000, "randomState": 0},
            "spec.paramGrid": {
                "svc__C": {"distribution": "loguniform", "a": 0.01, "b": 10}
            },
        },
        "spec.search.nIter",
        ("10000000 candidates", "limit of 100000", "lower nIter"),
    ),
    (
        "list-for-a-distribution-argument",
        {
            "spec.search": {"type": "random", "nIter": 4, "randomState": 0},
            "spec.paramGrid": {
                "svc__C": {"distribution": "loguniform", "a": [None], "b": 10}
            },
        },
        "spec.paramGrid.svc__C.a",
        ("needs a number for a", "[None]"),
    ),
    (
        "string-for-nested-integer",
        {"spec.cv": {"splitter": "KFold", "nSplits": "three"}},
        "spec.cv.nSplits",
        ("valid integer", "'three'"),
    ),
    (
        "string-for-list",
        {"spec.dataset.features": "sepal length (cm),petal width (cm)"},
        "spec.dataset.features",
        ("valid list", "'sepal length (cm),petal width (cm)'"),
    ),
    (
        "list-for-step-params",
        {"spec.estimator.pipeline.0.params": ["C", 1.0]},
        "spec.estimator.pipeline[0].params",
        ("valid dictionary", "['C', 1.0]"),
    ),
    (
        "number-for-secret-name",
        {"spec.storage.secretRef": {"name": 5}},
        "spec.storage.secretRef.name",
        ("valid string", "got 5"),
    ),
    (
        "string-for-holdout-fraction",
        {"spec.dataset.holdout": {"fraction": "half"}},
        "spec.dataset.holdout.fraction",
        ("valid number", "'half'"),
    ),
    (
        "unknown-field-in-dataset",
        {"spec.dataset.targte": "target"},
        "spec.dataset.targte",
        ("unknown field 'targte'", "did you mean 'target'"),
    ),
    (
        "unknown-field-in-pipeline-step",
        {"spec.estimator.pipeline.1.parms": {"C": 1.0}},
        "spec.estimator.pipeline[1].parms",
        ("unknown field 'parms'", "did you mean 'params'"),
    ),
    (
        "unknown-field-three-deep",
        {"spec.storage.secretRef": {"name": "s3-credentials", "acessKeyIdKey": "KEY"}},
        "spec.storage.secretRef.acessKeyIdKey",
        ("unknown field 'acessKeyIdKey'", "did you mean 'accessKeyIdKey'"),
    ),
    (
        "unknown-top-level-field",
        {"spce": {}},
        "spce",
        ("unknown field 'spce'", "did you mean 'spec'"),
    ),
    (
        "negative-memory-request",
        {"spec.resources": {"requests": {"memory": "-512Mi"}}},
        "spec.resources.requests",
        ("memory", "'-512Mi'", "greater than zero"),
    ),
    (
        "negative-cpu-number",
        {"spec.resources": {"limits": {"cpu": -2}}},
        "spec.resources.limits",
        ("cpu", "-2", "greater than zero"),
    ),
    (
        "zero-memory-limit",
        {"spec.resources": {"limits": {"memory": 0}}},
        "spec.resources.limits",
        ("memory", "0", "greater than zero"),
    ),
    (
        "negative-parallelism",
        {"spec.parallelism": -1},
        "spec.parallelism",
        ("greater than or equal to 1", "got -1"),
    ),
    (
        "negative-backoff-limit",
        {"spec.job": {"backoffLimitPerIndex": -1}},
        "spec.job.backoffLimitPerIndex",
        ("greater than or equal to 0", "got -1"),
    ),
    (
        "misspelt-error-score",
        {"spec.errorScore": "rase"},
        "spec.errorScore",
        ("expected 'raise', 'nan' or a number", "got 'rase'"),
    ),
    (
        "null-grid",
        {"spec.paramGrid": None},
        "spec.paramGrid",
        ("a mapping of parameter names to lists of values", "list of such mappings"),
    ),
    (
        "misspelt-option-in-the-grid",
        {"spec.paramGrid": {"svc__kernel": ["rbf", "rbff"]}},
        "spec.paramGrid.svc__kernel",
        ("The 'kernel' parameter of SVC", "Got 'rbff'", "Did you mean 'rbf'?"),
    ),
    (
        "random-search-field-in-a-grid-search",
        {"spec.search": {"type": "grid", "nIter": 5}},
        "spec.search",
        ("nIter applies to a random search only", "set type: random"),
    ),
    (
        "out-of-range-fixed-value-in-a-pipeline-step",
        {"spec.estimator.pipeline.1.params": {"gamma": -1.0}},
        "spec.estimator.pipeline[1].params.gamma",
        ("The 'gamma' parameter of SVC", "Got -1.0"),
    ),
    (
        "out-of-range-value-in-a-list-of-grids",
        {"spec.paramGrid": [{"svc__C": [1.0]}, {"svc__C": [0.1, -1.0]}]},
        "spec.paramGrid[1].svc__C",
        ("'C' parameter of SVC must be a float in the range (0.0, inf]", "Got -1.0"),
    ),
    (
        "misspelt-option-in-a-random-search",
        {
            "spec.search": {"type": "random", "nIter": 4, "randomState": 0},
            "spec.paramGrid": {
                "svc__C": {"distribution": "loguniform", "a": 0.01, "b": 10},
                "svc__kernel": ["lnear"],
            },
        },
        "spec.paramGrid.svc__kernel",
        ("Got 'lnear'", "Did you mean 'linear'?"),
    ),
]


def put(document: dict[str, Any], path: str, value: Any) -> None:
    """Set the dotted ``path`` (list indexes as numbers) to ``value``,
    creating mappings on the way."""
    *parents, leaf = path.split(".")
    node: Any = document
    for name in parents:
        node = node[int(name)] if isinstance(node, list) else node.setdefault(name, {})
    node[leaf] = value


def base_manifest(folder: pathlib.Path, **edits: Any) -> dict[str, Any]:
    data = write_dataset(folder, "iris", edit=edits.pop("data", None))
    return manifest(
        data,
        folder / "out",
        estimator=copy.deepcopy(PIPELINE),
        param_grid={"svc__C": [0.1, 1.0]},
        cv=3,
        **edits,
    )


@pytest.mark.parametrize(
    ("edits", "field", "hints"),
    [case[1:] for case in MANIFEST_MISTAKES],
    ids=[case[0] for case in MANIFEST_MISTAKES],
)
def test_manifest_mistake_is_named_by_validate(
    edits: dict[str, Any],
    field: str,
    hints: tuple[str, ...],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``kubegrid validate`` exits 2 with ``error: <field>: ...`` and every hint."""
    document = base_manifest(tmp_path)
    for where, value in edits.items():
        put(document, where, value)
    path = write_manifest(tmp_path, document)

    code = cli.main(["validate", str(path)])

    assert_named(code, capsys.readouterr().err, field, hints)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("spec.errorScore", "rase"),
        ("spec.paramGrid", None),
        ("spec.cv", None),
        ("spec.scoring", 5),
    ],
)
def test_a_value_of_none_of_a_fields_shapes_is_named_once(
    where: str, value: Any, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A field that takes several shapes (a number or a word, a mapping or a
    list) is named on one line that says what it takes, not once for each
    shape pydantic tried."""
    document = base_manifest(tmp_path)
    put(document, where, value)
    path = write_manifest(tmp_path, document)

    code = cli.main(["validate", str(path)])

    err = capsys.readouterr().err
    assert_named(code, err, where, ("expected ", f"(got {value!r})"))
    assert err.count(where) == 1, err
    assert len(err.splitlines()) == 1, err


def test_values_scikit_learn_accepts_pass_validate(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Grid values of every kind an estimator takes (None, a step replaced by
    'passthrough', a mapping, an int for a float) pass the value check; so
    does a fixed value the grid always replaces, since it is never fitted."""
    document = base_manifest(tmp_path)
    document["spec"]["estimator"]["pipeline"][1]["params"] = {"C": -1.0}
    document["spec"]["paramGrid"] = {
        "scale": ["passthrough", None],
        "svc__C": [1, 0.5],
        "svc__class_weight": [None, "balanced", {0: 1.0, 1: 2.0, 2: 1.0}],
        "svc__gamma": ["scale", 0.1],
    }
    path = write_manifest(tmp_path, document)

    code = cli.main(["validate", str(path)])

    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("ok: 24 candidates")


def assert_named(code: int, err: str, field: str, hints: tuple[str, ...]) -> None:
    """Exit 2 with ``error: <field>: ...``, every hint, and no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(f"error: {field}: "), err
    for hint in hints:
        assert hint in err, f"{hint!r} not in {err!r}"


def with_text_column(frame: pd.DataFrame) -> pd.DataFrame:
    frame.insert(2, "colour", np.where(frame.index % 2 == 0, "red", "blue"))
    return frame


def with_named_labels_missing(frame: pd.DataFrame) -> pd.DataFrame:
    names = {0: "setosa", 1: "versicolor", 2: "virginica"}
    frame["target"] = frame["target"].map(names).astype(object)
    frame.loc[[7, 90], "target"] = np.nan
    return frame


DATA_MISTAKES = [
    pytest.param(
        with_text_column,
        "spec.dataset.features",
        ("'colour'", "not numeric", "'red'", "first step 'scale' (StandardScaler)"),
        id="text-column-into-a-scaler",
    ),
    pytest.param(
        with_named_labels_missing,
        "spec.dataset.target",
        ("'target'", "2 missing values", "[7, 90]", "drop or fill"),
        id="string-labels-with-nan",
    ),
]


@pytest.mark.parametrize(("data", "field", "hints"), DATA_MISTAKES)
def test_data_mistake_is_named_before_any_fit(
    data: Any,
    field: str,
    hints: tuple[str, ...],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``kubegrid run`` exits 2 naming the column, and writes nothing."""
    document = base_manifest(tmp_path, data=data)
    assert_refused_before_any_fit(document, field, hints, tmp_path, capsys)


def assert_refused_before_any_fit(
    document: dict[str, Any],
    field: str,
    hints: tuple[str, ...],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``kubegrid run`` exits 2 with ``error: <field>: ...`` and every hint, no
    traceback, and nothing written to the output."""
    path = write_manifest(tmp_path, document)

    code = cli.main(["run", str(path), "--quiet", "--workers", "1"])

    assert_named(code, capsys.readouterr().err, field, hints)
    assert not (tmp_path / "out").exists()


def with_a_missing_feature(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[[3, 41], "petal width (cm)"] = np.nan
    return frame


def with_no_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[:0]


@pytest.mark.parametrize(
    ("data", "field", "hints"),
    [
        pytest.param(
            with_a_missing_feature,
            "spec.dataset.features",
            ("'petal width (cm)'", "2 missing values", "[3, 41]", "SVC", "Imputer"),
            id="nan-in-a-feature",
        ),
        pytest.param(
            with_no_rows,
            "spec.dataset.uri",
            ("header but no rows",),
            id="header-only-csv",
        ),
    ],
)
def test_data_mistake_of_a_plain_estimator_is_named_before_any_fit(
    data: Any,
    field: str,
    hints: tuple[str, ...],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An SVC on its own (no scaler first to pass NaN on): ``kubegrid run``
    exits 2 naming the column or the file, with no traceback and nothing
    written."""
    document = base_manifest(tmp_path, data=data)
    document["spec"]["estimator"] = {"class": "sklearn.svm.SVC"}
    document["spec"]["paramGrid"] = {"C": [0.1, 1.0]}
    assert_refused_before_any_fit(document, field, hints, tmp_path, capsys)


def test_an_output_path_that_is_a_file_is_a_user_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a transient failure (exit 75) that a Job would retry: exit 2,
    naming spec.output.uri."""
    document = base_manifest(tmp_path)
    taken = tmp_path / "taken.csv"
    taken.write_text("a file, not a folder\n")
    document["spec"]["output"]["uri"] = str(taken)
    path = write_manifest(tmp_path, document)

    code = cli.main(["run", str(path), "--quiet", "--workers", "1"])

    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: spec.output.uri: "), err
    assert f"{taken} is a file, not a folder" in err, err
    assert "Traceback" not in err


def with_a_class_of_one(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[[0]].assign(target=7)], ignore_index=True)


def test_class_smaller_than_the_folds_is_warned_about(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A class with one row under 3 stratified folds: the search still runs
    (scikit-learn only warns), but stderr says so on one line, naming the
    class and the fix, with scikit-learn's own warning, and summary.json
    keeps both."""
    path = write_manifest(tmp_path, base_manifest(tmp_path, data=with_a_class_of_one))

    code = cli.main(["run", str(path), "--quiet", "--workers", "1"])

    err = capsys.readouterr().err
    ours = (
        "spec.dataset.target: class 7 has only 1 rows, fewer than the 3 folds; "
        "some folds will not see it (drop or merge the class, or use fewer "
        "splits in spec.cv)"
    )
    sklearns = (
        "The least populated class in y has only 1 members, which is less than "
        "n_splits=3."
    )
    assert code == 0, err
    assert f"warning: {ours}\n" in err
    assert f"warning: {sklearns}\n" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert ours in summary["warnings"] and sklearns in summary["warnings"]
