"""A user's mistake is rejected before any fit, with a message that fixes it.

Each case starts from a manifest that runs, makes one mistake a user makes, and
runs ``kubegrid run`` on it. The run must end with exit code 2 (distinct from
1, a bug, and 75, a transient failure), print no traceback, name the field
that is wrong and say how to put it right, and leave the output directory
untouched: nothing ran.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubegrid import cli, spec
from tests.engine.searches import Dataset, manifest, write_dataset, write_manifest

Edit = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class Mistake:
    """One mistake: how to make it, and what the message must say."""

    id: str
    edit: Edit
    field: str
    hints: tuple[str, ...]
    data: Callable[[pd.DataFrame], pd.DataFrame] | None = None


def valid_manifest(data: Dataset, output: pathlib.Path) -> dict[str, Any]:
    return manifest(
        data,
        output,
        estimator={"class": "sklearn.svm.SVC", "params": {"kernel": "rbf"}},
        param_grid={"C": [0.1, 1.0], "gamma": ["scale"]},
        cv=3,
        scoring="accuracy",
    )


def spec_edit(**fields: Any) -> Edit:
    """Set top-level spec fields (camelCase) to the given values."""

    def edit(document: dict[str, Any]) -> None:
        document["spec"].update(fields)

    return edit


def nested_edit(path: str, value: Any) -> Edit:
    """Set ``spec.<path>`` (dotted) to ``value``, creating mappings on the way."""

    def edit(document: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = document["spec"]
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value

    return edit


def both(*edits: Edit) -> Edit:
    """Make every edit, in order."""

    def edit(document: dict[str, Any]) -> None:
        for one in edits:
            one(document)

    return edit


def no_edit(document: dict[str, Any]) -> None:
    """Leave the manifest as it is (the mistake is in the data)."""


def pipeline_edit(document: dict[str, Any]) -> None:
    document["spec"]["estimator"] = {
        "pipeline": [
            {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
            {"name": "svc", "class": "sklearn.svm.SVC"},
        ]
    }
    document["spec"]["paramGrid"] = {"svc__C": [1.0], "svc__gama": [0.1]}


def rename_spec_field(old: str, new: str) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        document["spec"][new] = document["spec"].pop(old)

    return edit


def with_text_column(frame: pd.DataFrame) -> pd.DataFrame:
    frame.insert(1, "colour", np.where(frame.index % 2 == 0, "red", "blue"))
    return frame


def with_missing_target(frame: pd.DataFrame) -> pd.DataFrame:
    frame["target"] = frame["target"].astype(float)
    frame.loc[[3, 40], "target"] = np.nan
    return frame


def with_float_target(frame: pd.DataFrame) -> pd.DataFrame:
    frame["target"] = frame["target"] + 0.5
    return frame


def with_one_text_cell(frame: pd.DataFrame) -> pd.DataFrame:
    """A numeric column turned to text by one cell a spreadsheet left."""
    column = frame.columns[2]
    frame[column] = frame[column].astype(object)
    frame.loc[7, column] = "n/a?"
    return frame


def with_text_target(frame: pd.DataFrame) -> pd.DataFrame:
    frame["target"] = np.array(["setosa", "versicolor", "virginica"])[frame["target"]]
    return frame


def with_infinite_target(frame: pd.DataFrame) -> pd.DataFrame:
    frame["target"] = frame["target"].astype(float)
    frame.loc[[5, 9], "target"] = np.inf
    return frame


def with_huge_labels(frame: pd.DataFrame) -> pd.DataFrame:
    frame["target"] = (frame["target"] + 1) * 1e19
    return frame


def with_group_column(frame: pd.DataFrame) -> pd.DataFrame:
    frame["group"] = frame.index % 5
    return frame


MISTAKES = [
    Mistake(
        "misspelt-estimator-class",
        nested_edit("estimator.class", "sklearn.svm.SVCC"),
        "spec.estimator.class",
        ("'SVCC'", "did you mean sklearn.svm.SVC"),
    ),
    Mistake(
        "unknown-estimator-module",
        nested_edit("estimator.class", "sklearn.svmm.SVC"),
        "spec.estimator.class",
        ("'sklearn.svmm'", "did you mean sklearn.svm.SVC"),
    ),
    Mistake(
        "misspelt-scorer",
        spec_edit(scoring="acurracy"),
        "spec.scoring",
        ("'acurracy'", "did you mean 'accuracy'"),
    ),
    Mistake(
        "binary-scorer-on-three-classes",
        spec_edit(scoring="roc_auc"),
        "spec.scoring",
        ("'roc_auc' cannot score this multiclass target", "use roc_auc_ovr"),
    ),
    Mistake(
        "averaged-scorer-on-three-classes",
        spec_edit(scoring={"f1": "f1", "acc": "accuracy"}, refit="acc"),
        "spec.scoring.f1",
        ("'f1' cannot score this multiclass target", "use f1_macro or f1_weighted"),
    ),
    Mistake(
        "classification-scorer-for-a-regressor",
        both(
            nested_edit("estimator.class", "sklearn.svm.SVR"),
            spec_edit(paramGrid={"C": [0.1, 1.0]}),
        ),
        "spec.scoring",
        ("'accuracy' cannot score", "SVR is a regressor", "such as r2"),
        data=with_float_target,
    ),
    Mistake(
        "misspelt-splitter",
        spec_edit(cv={"splitter": "KFlod", "nSplits": 3}),
        "spec.cv.splitter",
        ("'KFlod'", "did you mean 'KFold'"),
    ),
    Mistake(
        "unknown-parameter",
        spec_edit(paramGrid={"C": [1.0], "gama": [0.1]}),
        "spec.paramGrid.gama",
        ("'gama'", "did you mean 'gamma'"),
    ),
    Mistake(
        "misspelt-parameter-value",
        spec_edit(paramGrid={"C": [0.1, 1.0], "kernel": ["rbff"]}),
        "spec.paramGrid.kernel",
        ("'rbff'", "The 'kernel' parameter of SVC must be", "Did you mean 'rbf'?"),
    ),
    Mistake(
        "misspelt-fixed-parameter-value",
        nested_edit("estimator.params.kernel", "rbff"),
        "spec.estimator.params.kernel",
        ("'rbff'", "The 'kernel' parameter of SVC must be", "Did you mean 'rbf'?"),
    ),
    Mistake(
        "unknown-pipeline-step-parameter",
        pipeline_edit,
        "spec.paramGrid.svc__gama",
        ("'svc__gama'", "did you mean 'svc__gamma'"),
    ),
    Mistake(
        "missing-target-column",
        nested_edit("dataset.target", "label"),
        "spec.dataset.target",
        ("'label'", "columns are:"),
    ),
    Mistake(
        "missing-groups-column",
        both(
            nested_edit("dataset.groups", "groups"),
            spec_edit(cv={"splitter": "GroupKFold", "nSplits": 3}),
        ),
        "spec.dataset.groups",
        ("'groups'", "did you mean 'group'"),
        data=with_group_column,
    ),
    Mistake(
        "group-splitter-without-groups",
        spec_edit(cv={"splitter": "GroupKFold", "nSplits": 3}),
        "spec.dataset.groups",
        ("GroupKFold", "set dataset.groups"),
    ),
    Mistake(
        "text-column-for-svc",
        no_edit,
        "spec.dataset.features",
        ("'colour'", "not numeric", "OneHotEncoder"),
        data=with_text_column,
    ),
    Mistake(
        "one-text-cell-in-a-numeric-column",
        no_edit,
        "spec.dataset.features",
        ("'petal length (cm)' is not numeric (row 7: 'n/a?')",),
        data=with_one_text_cell,
    ),
    Mistake(
        "text-target-for-a-regressor",
        both(
            nested_edit("estimator.class", "sklearn.svm.SVR"),
            spec_edit(paramGrid={"C": [0.1, 1.0]}, scoring="r2"),
        ),
        "spec.dataset.target",
        ("'target' holds text (row 0: 'setosa')", "SVR", "choose a classifier"),
        data=with_text_target,
    ),
    Mistake(
        "continuous-target-for-a-classifier",
        no_edit,
        "spec.dataset.target",
        ("'target' holds continuous values (row 0: 0.5)", "SVC", "choose a regressor"),
        data=with_float_target,
    ),
    Mistake(
        "infinite-target",
        no_edit,
        "spec.dataset.target",
        ("'target' has 2 infinite values (first rows: [5, 9])",),
        data=with_infinite_target,
    ),
    Mistake(
        "labels-too-large-for-integers",
        no_edit,
        "spec.dataset.target",
        ("'target' holds continuous values (row 0: 1e+19)", "SVC"),
        data=with_huge_labels,
    ),
    Mistake(
        "single-scorer-the-estimator-cannot-feed",
        both(
            spec_edit(
                estimator={"class": "sklearn.linear_model.Ridge"},
                paramGrid={"alpha": [0.1, 1.0]},
                scoring="roc_auc",
            ),
        ),
        "spec.scoring",
        ("'roc_auc' reads", "Ridge does not have"),
        data=with_float_target,
    ),
    Mistake(
        "target-with-missing-values",
        no_edit,
        "spec.dataset.target",
        ("missing values", "drop or fill"),
        data=with_missing_target,
    ),
    Mistake(
        "empty-grid",
        spec_edit(paramGrid={}),
        "spec.paramGrid",
        ("empty", "list of values"),
    ),
    Mistake(
        "empty-list-of-grids",
        spec_edit(paramGrid=[]),
        "spec.paramGrid",
        ("empty", "at least one"),
    ),
    Mistake(
        "empty-value-list",
        spec_edit(paramGrid={"C": []}),
        "spec.paramGrid.C",
        ("got []", "give at least one value"),
    ),
    Mistake(
        "grid-over-max-candidates",
        both(
            spec_edit(paramGrid={"C": [0.1, 1.0, 10.0], "gamma": [0.1, 1.0]}),
            nested_edit("search.maxCandidates", 5),
        ),
        "spec.paramGrid",
        ("6 candidates", "limit of 5", "raise search.maxCandidates"),
    ),
    Mistake(
        "unreachable-dataset",
        nested_edit("dataset.uri", "/nonexistent/kubegrid/iris.csv"),
        "spec.dataset.uri",
        (
            "/nonexistent/kubegrid/iris.csv",
            "no such",
            "check the path",
            "sample-data iris",
        ),
    ),
    Mistake(
        "dataset-is-a-directory",
        nested_edit("dataset.uri", "/tmp/"),
        "spec.dataset.uri",
        ("/tmp/", "not a file", "check the path"),
    ),
    Mistake(
        "distribution-outside-its-domain",
        both(
            spec_edit(paramGrid={"C": {"distribution": "loguniform", "a": -1, "b": 2}}),
            nested_edit("search", {"type": "random", "nIter": 2, "randomState": 0}),
        ),
        "spec.paramGrid.C",
        ("scipy.stats.loguniform", "'a': -1", "Domain error"),
    ),
    Mistake(
        "wrong-type",
        spec_edit(parallelism="many"),
        "spec.parallelism",
        ("'many'", "integer"),
    ),
    Mistake(
        "misspelt-top-level-field",
        rename_spec_field("paramGrid", "paramgrid"),
        "spec.paramgrid",
        ("did you mean 'paramGrid'",),
    ),
    Mistake(
        "negative-resources",
        nested_edit("resources.limits", {"cpu": "-1"}),
        "spec.resources.limits",
        ("cpu", "'-1'", "greater than zero"),
    ),
    Mistake(
        "random-search-without-seed",
        both(nested_edit("search.type", "random"), nested_edit("search.nIter", 2)),
        "spec.search.randomState",
        ("seed", "set randomState"),
    ),
    Mistake(
        "shuffled-kfold-without-seed",
        spec_edit(cv={"splitter": "KFold", "nSplits": 3, "shuffle": True}),
        "spec.cv.randomState",
        ("shuffles", "set randomState"),
    ),
    Mistake(
        "refit-names-unknown-metric",
        spec_edit(scoring=["accuracy", "f1_macro"], refit="roc_auc"),
        "spec.refit",
        ("'roc_auc'", "'accuracy'", "'f1_macro'", "or set refit: false"),
    ),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_mistake_is_rejected_before_any_fit(
    mistake: Mistake, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit code 2, no traceback, a message naming the field, the bad value
    and the fix, and nothing written to the output directory."""
    data = write_dataset(tmp_path, "iris", edit=mistake.data)
    output = tmp_path / "out"
    document = valid_manifest(data, output)
    mistake.edit(document)
    path = write_manifest(tmp_path, document)

    code = cli.main(["run", str(path), "--quiet", "--workers", "1"])

    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert f"{mistake.field}:" in err or f"{mistake.field}." in err, err
    for hint in mistake.hints:
        assert hint in err, f"{hint!r} not in {err!r}"
    assert not output.exists()


def test_valid_manifest_runs(tmp_path: pathlib.Path) -> None:
    """The manifest every mistake starts from is itself accepted and runs."""
    data = write_dataset(tmp_path, "iris")
    output = tmp_path / "out"
    path = write_manifest(tmp_path, valid_manifest(data, output))

    assert cli.main(["run", str(path), "--quiet", "--workers", "1"]) == 0
    assert (output / "summary.json").is_file()


def test_unwritable_output_is_a_user_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output path that cannot be a directory (it runs through a file) ends
    the run before any fit with exit code 2, naming the field and the path."""
    data = write_dataset(tmp_path, "iris")
    blocker = tmp_path / "results.txt"
    blocker.write_text("a file, not a directory")
    path = write_manifest(tmp_path, valid_manifest(data, blocker / "out"))

    code = cli.main(["run", str(path), "--quiet", "--workers", "1"])

    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert f"{blocker} is a file, not a folder" in err, err
    assert "spec.output.uri" in err
    # Checked before any fit: no partial result was written anywhere.
    assert not list(tmp_path.rglob("shard-*.json"))


def test_a_dataset_that_is_not_csv_is_named_as_such(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON file read as CSV has no target column; the message says the file
    is not CSV rather than suggesting one of its mangled column names."""
    data = write_dataset(tmp_path, "iris")
    records = tmp_path / "iris.json"
    data.frame.to_json(records, orient="records")
    document = valid_manifest(data, tmp_path / "out")
    document["spec"]["dataset"]["uri"] = str(records)

    code = cli.main(["run", str(write_manifest(tmp_path, document)), "--quiet"])

    err = capsys.readouterr().err
    assert code == 2, err
    prefix = f"error: spec.dataset.uri: {records} read as csv has no column"
    assert err.startswith(prefix), err
    assert "spec.dataset.format" in err and "Traceback" not in err


def test_yaml_exponent_floats_are_numbers(tmp_path: pathlib.Path) -> None:
    """``1e-3`` is a float, as kubectl reads it, not the string PyYAML 1.1 sees."""
    path = tmp_path / "exp.yaml"
    path.write_text(
        "apiVersion: kubegrid.io/v1alpha1\n"
        "kind: GridSearch\n"
        "metadata: {name: exp}\n"
        "spec:\n"
        "  dataset: {uri: d.csv, target: y}\n"
        "  estimator: {class: sklearn.svm.SVC}\n"
        "  paramGrid: {C: [1e-3, 1E3, 10], gamma: [1.5e-2]}\n"
        "  output: {uri: out}\n"
    )
    grid = spec.load(path).spec.param_grid
    assert grid == {"C": [0.001, 1000.0, 10], "gamma": [0.015]}
    assert isinstance(grid["C"][0], float) and isinstance(grid["C"][2], int)
