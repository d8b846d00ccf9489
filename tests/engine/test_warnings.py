"""Warnings of the fits are counted in the summary, not printed once per fit.

scikit-learn warns from inside every fit that converges slowly, and a score
that cannot be computed comes back as NaN with a warning carrying a whole
traceback. Over a search these flood the terminal. kubegrid records each
task's warnings with its result and reports each distinct one once, with the
number of fits that raised it; a search whose every score failed has no best
candidate and ends as a mistake in ``spec.scoring``.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from kubegrid import cli, reducer
from kubegrid.errors import SpecError
from kubegrid.execution import SCORE_FAILED
from tests.engine.searches import manifest, read_outcome, write_dataset, write_manifest


def sorted_by_class(frame: pd.DataFrame) -> pd.DataFrame:
    # Unshuffled folds of class-sorted rows: the first and last hold one class.
    return frame.sort_values("target", kind="stable").reset_index(drop=True)


def test_failed_scores_and_warnings_are_counted_once_each(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path, "breast_cancer", edit=sorted_by_class)
    output = tmp_path / "out"
    document = manifest(
        data,
        output,
        estimator={"class": "sklearn.linear_model.LogisticRegression"},
        param_grid={"max_iter": [2, 3]},
        cv={"splitter": "KFold", "nSplits": 3},
        scoring="neg_log_loss",
    )

    code = cli.main(["run", str(write_manifest(tmp_path, document)), "--workers", "1"])

    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err and "Scoring failed" not in err
    summary = read_outcome(output).summary
    # Two of three folds hold one class: log loss then needs the labels.
    assert summary["nFailedScores"] == 4
    seen = {w["warning"]: w["tasks"] for w in summary["fitWarnings"]}
    # One message per fold: "only one label (0)", "only one label (1)".
    failed = [w for w in seen if w.startswith(SCORE_FAILED)]
    assert len(failed) == 2 and all("only one label" in w for w in failed)
    assert [seen[w] for w in failed] == [2, 2]
    # lbfgs names the iteration count: one line per max_iter, three fits each.
    slow = [n for w, n in seen.items() if w.startswith("ConvergenceWarning")]
    assert slow == [3, 3]
    assert f"in 2 of 6 fits: {failed[0]}" in err
    assert json.loads((output / "summary.json").read_text()) == summary


def test_a_search_whose_every_score_failed_is_refused() -> None:
    records = [{"warnings": [f"{SCORE_FAILED}ValueError: no"]} for _ in range(4)]
    table = {"mean_test_score": np.array([np.nan, np.nan])}
    with pytest.raises(SpecError) as caught:
        reducer._check_some_scores(records, table)
    assert caught.value.field == "spec.scoring"
    assert "scoring failed on all 4 fits" in str(caught.value)
    assert str(caught.value).endswith("the error: ValueError: no")

    # One score anywhere is a result to report, not a mistake.
    table["mean_test_score"][1] = 0.5
    reducer._check_some_scores(records, table)


def test_a_random_search_larger_than_its_grid_says_so_once(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As RandomizedSearchCV, every combination is searched; kubegrid's own
    note, naming the field, replaces scikit-learn's warning."""
    data = write_dataset(tmp_path, "iris")
    document = manifest(
        data,
        tmp_path / "out",
        estimator={"class": "sklearn.svm.SVC"},
        param_grid={"C": [0.5, 5.0]},
        search={"type": "random", "nIter": 10, "randomState": 0},
    )

    code = cli.main(["run", str(write_manifest(tmp_path, document)), "--quiet"])

    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("spec.search.nIter asks for 10 candidates") == 1, err
    assert "only 2 combinations" in err and "UserWarning" not in err
    assert read_outcome(tmp_path / "out").summary["nCandidates"] == 2


@pytest.mark.parametrize("shards", [1, 7])
def test_a_shared_prefixs_warnings_count_for_every_fit_that_uses_it(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], shards: int
) -> None:
    """A prefix fitted once for several candidates warns once, yet every task
    that uses it carries the warning, since each of GridSearchCV's fits would
    have raised it: fitted here, or read from the machine's cache."""
    data = write_dataset(tmp_path, "diabetes")
    output = tmp_path / "out"
    document = manifest(
        data,
        output,
        estimator={
            "pipeline": [
                {
                    "name": "bins",
                    "class": "sklearn.preprocessing.KBinsDiscretizer",
                    "params": {"n_bins": 5, "encode": "ordinal"},
                },
                {"name": "r", "class": "sklearn.linear_model.Ridge"},
            ]
        },
        param_grid={"r__alpha": [0.1, 1.0, 10.0]},
        cv=5,
        sharding={"shards": shards},
    )

    code = cli.main(["run", str(write_manifest(tmp_path, document)), "--workers", "2"])

    err = capsys.readouterr().err
    assert code == 0, err
    seen = {
        w["warning"]: w["tasks"] for w in read_outcome(output).summary["fitWarnings"]
    }
    # Two columns have too few distinct values for five bins: the sex column
    # (feature 1) on every split, feature 7 on two of the five.
    narrow = [n for w, n in seen.items() if "Bins whose width are too small" in w]
    assert sorted(narrow) == [6, 15], seen
