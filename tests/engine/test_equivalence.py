"""kubegrid's results equal scikit-learn's on the same data and splits.

Each case runs one search twice: through kubegrid (the ``kubegrid run`` CLI or
the Python API, sharded and over worker processes) and through scikit-learn's
own GridSearchCV / RandomizedSearchCV on the frame read back from the same CSV.
Every ``cv_results_`` key but the timings must be equal, as must the best
candidate and the predictions of the refitted model.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pytest
from scipy.stats import loguniform, randint
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    LeaveOneGroupOut,
    RandomizedSearchCV,
    RepeatedStratifiedKFold,
    ShuffleSplit,
    StratifiedGroupKFold,
    TimeSeriesSplit,
)
from sklearn.model_selection._search import BaseSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from kubegrid import cli, context, local, results
from kubegrid import spec as specs
from tests.engine.searches import (
    Dataset,
    Outcome,
    assert_same_search,
    manifest,
    read_outcome,
    write_dataset,
    write_manifest,
)
from tests.support.kernels import RBFKernel

# --------------------------------------------------------------------------
# Running both sides and comparing them


def run_kubegrid(
    document: dict[str, Any], folder: pathlib.Path, *, via: str, workers: int
) -> Outcome:
    """Run the manifest through the CLI or the Python API; read its artifacts."""
    if via == "cli":
        path = write_manifest(folder, document)
        argv = ["run", str(path), "--quiet", "--workers", str(workers)]
        assert cli.main(argv) == 0
    else:
        ctx = context.prepare(specs.parse(document))
        local.run(ctx, workers)
    return read_outcome(pathlib.Path(document["spec"]["output"]["uri"]))


# --------------------------------------------------------------------------
# The cases: a manifest and the scikit-learn search it must equal


@dataclasses.dataclass
class Case:
    """One search written both ways, and how kubegrid is to run it."""

    data: Dataset
    document: dict[str, Any]
    search: BaseSearchCV
    via: str = "api"
    workers: int = 2


def svc_on_digits(folder: pathlib.Path) -> Case:
    data = write_dataset(folder, "digits", rows=600)
    grid = {"C": [1.0, 10.0], "gamma": [0.0005, 0.005]}
    document = manifest(
        data,
        folder / "out",
        estimator={"class": "sklearn.svm.SVC", "params": {"kernel": "rbf"}},
        param_grid=grid,
        cv=5,
        scoring="accuracy",
        sharding={"shards": 3},
    )
    search = GridSearchCV(SVC(kernel="rbf"), grid, cv=5, scoring="accuracy")
    return Case(data, document, search, via="cli")


def logistic_multimetric_on_breast_cancer(folder: pathlib.Path) -> Case:
    data = write_dataset(folder, "breast_cancer")
    grid = {"C": [0.01, 0.1, 1.0]}
    scoring = ["accuracy", "f1", "roc_auc"]
    params = {"solver": "liblinear", "random_state": 0}
    document = manifest(
        data,
        folder / "out",
        estimator={
            "class": "sklearn.linear_model.LogisticRegression",
            "params": params,
        },
        param_grid=grid,
        cv=5,
        scoring=scoring,
        refit="roc_auc",
        returnTrainScore=True,
        sharding={"shards": 4},
    )
    search = GridSearchCV(
        LogisticRegression(**params),
        grid,
        cv=5,
        scoring=scoring,
        refit="roc_auc",
        return_train_score=True,
    )
    return Case(data, document, search)


def scaled_svc_pipeline_on_iris(folder: pathlib.Path) -> Case:
    data = write_dataset(folder, "iris")
    grid = {"svc__C": [0.1, 1.0, 10.0]}
    document = manifest(
        data,
        folder / "out",
        estimator={
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "svc", "class": "sklearn.svm.SVC"},
            ]
        },
        param_grid=grid,
        cv=4,
        sharding={"shards": 2},
    )
    pipeline = Pipeline([("scale", StandardScaler()), ("svc", SVC())])
    search = GridSearchCV(pipeline, grid, cv=4)
    return Case(data, document, search, via="cli")


def list_of_grids_on_wine(folder: pathlib.Path) -> Case:
    data = write_dataset(folder, "wine")
    grid = [
        {"svc__kernel": ["linear"], "svc__C": [0.1, 1.0]},
        {"svc__kernel": ["rbf"], "svc__gamma": [0.01, 0.1]},
    ]
    document = manifest(
        data,
        folder / "out",
        estimator={
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "svc", "class": "sklearn.svm.SVC"},
            ]
        },
        param_grid=grid,
        cv=3,
        returnTrainScore=True,
        sharding={"shards": 3},
    )
    pipeline = Pipeline([("scale", StandardScaler()), ("svc", SVC())])
    search = GridSearchCV(pipeline, grid, cv=3, return_train_score=True)
    return Case(data, document, search, workers=1)


def random_search_on_pipeline(folder: pathlib.Path) -> Case:
    data = write_dataset(folder, "breast_cancer")
    document = manifest(
        data,
        folder / "out",
        estimator={
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {
                    "name": "svc",
                    "class": "sklearn.svm.SVC",
                    "params": {"kernel": "poly"},
                },
            ]
        },
        param_grid={
            "svc__C": {"distribution": "loguniform", "a": 0.01, "b": 100.0},
            "svc__degree": {"distribution": "randint", "low": 1, "high": 4},
            "svc__coef0": [0.0, 1.0],
        },
        search={"type": "random", "nIter": 6, "randomState": 7},
        cv=3,
        sharding={"shards": 5},
    )
    pipeline = Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel="poly"))])
    distributions = {
        "svc__C": loguniform(0.01, 100.0),
        "svc__degree": randint(1, 4),
        "svc__coef0": [0.0, 1.0],
    }
    search = RandomizedSearchCV(pipeline, distributions, n_iter=6, random_state=7, cv=3)
    return Case(data, document, search)


def ridge_regression_on_diabetes(folder: pathlib.Path) -> Case:
    data = write_dataset(folder, "diabetes")
    grid = {"alpha": [0.01, 0.1, 1.0, 10.0]}
    scoring = {"mse": "neg_mean_squared_error", "r2": "r2"}
    document = manifest(
        data,
        folder / "out",
        estimator={"class": "sklearn.linear_model.Ridge"},
        param_grid=grid,
        cv={"splitter": "KFold", "nSplits": 5, "shuffle": True, "randomState": 3},
        scoring=scoring,
        refit="r2",
        sharding={"shards": 3},
    )
    search = GridSearchCV(
        Ridge(),
        grid,
        cv=KFold(5, shuffle=True, random_state=3),
        scoring=scoring,
        refit="r2",
    )
    return Case(data, document, search, via="cli")


def _knn_with_splitter(
    name: str, cv: dict[str, Any], splitter: Any, *, n_groups: int | None = None
) -> Callable[[pathlib.Path], Case]:
    def build(folder: pathlib.Path) -> Case:
        data = write_dataset(folder, name, n_groups=n_groups)
        grid = {"n_neighbors": [3, 9]}
        document = manifest(
            data,
            folder / "out",
            estimator={"class": "sklearn.neighbors.KNeighborsClassifier"},
            param_grid=grid,
            cv=cv,
            sharding={"shards": 2},
        )
        search = GridSearchCV(KNeighborsClassifier(), grid, cv=splitter)
        return Case(data, document, search, workers=1 if n_groups else 2)

    build.__name__ = f"knn_{cv['splitter']}_on_{name}"
    return build


def ridge_time_series_on_diabetes(folder: pathlib.Path) -> Case:
    data = write_dataset(folder, "diabetes")
    grid = {"alpha": [0.1, 10.0]}
    document = manifest(
        data,
        folder / "out",
        estimator={"class": "sklearn.linear_model.Ridge"},
        param_grid=grid,
        cv={"splitter": "TimeSeriesSplit", "nSplits": 4, "gap": 2},
        sharding={"shards": 2},
    )
    search = GridSearchCV(Ridge(), grid, cv=TimeSeriesSplit(4, gap=2))
    return Case(data, document, search)


def _ridge_sharing_its_prefix(first_step: dict[str, Any], prefix: Any) -> Any:
    def build(folder: pathlib.Path) -> Case:
        data = write_dataset(folder, "diabetes")
        grid = {"r__alpha": [0.1, 1.0, 10.0]}
        document = manifest(
            data,
            folder / "out",
            estimator={
                "pipeline": [
                    {"name": "p", **first_step},
                    {"name": "r", "class": "sklearn.linear_model.Ridge"},
                ]
            },
            param_grid=grid,
            cv=5,
            # Units cut between shards: some candidates read the prefix's
            # output back from the machine's cache.
            sharding={"shards": 7},
        )
        pipeline = Pipeline([("p", prefix), ("r", Ridge())])
        return Case(data, document, GridSearchCV(pipeline, grid, cv=5))

    build.__name__ = f"ridge_after_{type(prefix).__name__}_sharing_it_on_diabetes"
    return build


def precomputed_kernel_svc_after_a_prefix_on_wine(folder: pathlib.Path) -> Case:
    """A final step reading a precomputed kernel selects square blocks of its
    input, which no shared prefix output holds: each fit runs whole."""
    data = write_dataset(folder, "wine")
    grid = {"m__C": [0.1, 1.0, 10.0]}
    document = manifest(
        data,
        folder / "out",
        estimator={
            "pipeline": [
                {"name": "s", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "k", "class": "tests.support.kernels.RBFKernel"},
                {
                    "name": "m",
                    "class": "sklearn.svm.SVC",
                    "params": {"kernel": "precomputed"},
                },
            ]
        },
        param_grid=grid,
        cv=3,
        sharding={"shards": 1},
    )
    pipeline = Pipeline(
        [("s", StandardScaler()), ("k", RBFKernel()), ("m", SVC(kernel="precomputed"))]
    )
    return Case(data, document, GridSearchCV(pipeline, grid, cv=3), workers=1)


def boosting_with_named_constraints_on_diabetes(folder: pathlib.Path) -> Case:
    """Columns named as the keys of a searched mapping: the fits must see the
    DataFrame's column names, as GridSearchCV's do."""
    data = write_dataset(folder, "diabetes")
    params = {"random_state": 0, "max_iter": 15}
    grid = {"monotonic_cst": [None, {"bmi": 1, "s5": 1}]}
    document = manifest(
        data,
        folder / "out",
        estimator={
            "class": "sklearn.ensemble.HistGradientBoostingRegressor",
            "params": params,
        },
        param_grid=grid,
        cv=3,
    )
    search = GridSearchCV(HistGradientBoostingRegressor(**params), grid, cv=3)
    return Case(data, document, search)


CASES = [
    svc_on_digits,
    logistic_multimetric_on_breast_cancer,
    scaled_svc_pipeline_on_iris,
    list_of_grids_on_wine,
    random_search_on_pipeline,
    ridge_regression_on_diabetes,
    _knn_with_splitter(
        "iris", {"splitter": "GroupKFold", "nSplits": 3}, GroupKFold(3), n_groups=6
    ),
    _knn_with_splitter(
        "wine",
        {"splitter": "StratifiedGroupKFold", "nSplits": 3},
        StratifiedGroupKFold(3),
        n_groups=9,
    ),
    _knn_with_splitter(
        "iris", {"splitter": "LeaveOneGroupOut"}, LeaveOneGroupOut(), n_groups=4
    ),
    _knn_with_splitter(
        "breast_cancer",
        {"splitter": "ShuffleSplit", "nSplits": 4, "testSize": 0.3, "randomState": 5},
        ShuffleSplit(4, test_size=0.3, random_state=5),
    ),
    _knn_with_splitter(
        "wine",
        {
            "splitter": "RepeatedStratifiedKFold",
            "nSplits": 3,
            "nRepeats": 2,
            "randomState": 11,
        },
        RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=11),
    ),
    ridge_time_series_on_diabetes,
    boosting_with_named_constraints_on_diabetes,
    precomputed_kernel_svc_after_a_prefix_on_wine,
    # The prefix is fitted once per split and its output reused: the final
    # step must get it in the memory layout Pipeline gives it (column-major
    # from a scaler; from PCA column-major to fit, row-major to score), since
    # Ridge's sums follow the layout to the last bit.
    _ridge_sharing_its_prefix(
        {"class": "sklearn.preprocessing.StandardScaler"}, StandardScaler()
    ),
    _ridge_sharing_its_prefix(
        {"class": "sklearn.decomposition.PCA", "params": {"n_components": 5}},
        PCA(n_components=5),
    ),
]


def fit_scikit_learn(case: Case) -> BaseSearchCV:
    data = case.data
    groups = data.group_labels
    return case.search.fit(
        data.X, data.y, **({"groups": groups} if groups is not None else {})
    )


@pytest.mark.parametrize("build", CASES, ids=lambda build: build.__name__)
def test_results_equal_scikit_learn(
    build: Callable[[pathlib.Path], Case], tmp_path: pathlib.Path
) -> None:
    """cv_results, best candidate and refit model equal scikit-learn's search."""
    case = build(tmp_path)
    ours = run_kubegrid(case.document, tmp_path, via=case.via, workers=case.workers)
    assert_same_search(ours, fit_scikit_learn(case), case.data.X)


# --------------------------------------------------------------------------
# Behaviours beyond plain equality

# lbfgs cannot fit an L1 penalty (l1_ratio=1) and says so with a ValueError, so
# one candidate in four fails on every split (checked against 1.9.1).
FAILING_GRID = {"clf__solver": ["lbfgs", "liblinear"], "clf__l1_ratio": [0.0, 1.0]}
FAILING_CANDIDATE = {"clf__l1_ratio": 1.0, "clf__solver": "lbfgs"}


def failing_fits_case(folder: pathlib.Path, error_score: Any) -> Case:
    data = write_dataset(folder, "breast_cancer")
    document = manifest(
        data,
        folder / "out",
        estimator={
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {
                    "name": "clf",
                    "class": "sklearn.linear_model.LogisticRegression",
                    "params": {"random_state": 0},
                },
            ]
        },
        param_grid=FAILING_GRID,
        cv=3,
        errorScore=error_score,
        sharding={"shards": 3},
    )
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression(random_state=0))]
    )
    score = np.nan if error_score == "nan" else error_score
    search = GridSearchCV(pipeline, FAILING_GRID, cv=3, error_score=score)
    return Case(data, document, search, via="cli")


# Both warn about the failures this test is about.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.FitFailedWarning")
@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
@pytest.mark.parametrize("error_score", ["nan", 0])
def test_failed_fits_score_error_score_where_scikit_learn_does(
    error_score: Any, tmp_path: pathlib.Path
) -> None:
    """Failed fits get errorScore (NaN or the number) in the same cells as in
    scikit-learn, the search goes on, and the summary counts the failures."""
    case = failing_fits_case(tmp_path, error_score)
    ours = run_kubegrid(case.document, tmp_path, via=case.via, workers=case.workers)
    search = fit_scikit_learn(case)

    assert_same_search(ours, search, case.data.X)
    failed = ours.cv_results["params"].index(FAILING_CANDIDATE)
    scores = [ours.cv_results[f"split{k}_test_score"][failed] for k in range(3)]
    if error_score == "nan":
        assert np.isnan(scores).all()
    else:
        assert scores == [0.0, 0.0, 0.0]
    assert ours.summary["nFailedFits"] == 3
    assert "lbfgs supports only" in ours.summary["fitErrors"][0]["error"]


def test_error_score_raise_stops_with_the_failing_candidate(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """errorScore: raise ends the run with exit code 2, no traceback, and a
    message naming the candidate whose fit failed."""
    case = failing_fits_case(tmp_path, "raise")
    path = write_manifest(tmp_path, case.document)

    code = cli.main(["run", str(path), "--quiet", "--workers", "2"])

    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    # The candidate as the grid names it, at its index in cv_results.
    assert f"candidate 2 {FAILING_CANDIDATE}" in err, err
    assert "lbfgs supports only" in err
    assert not (tmp_path / "out" / results.SUMMARY).exists()


def test_refit_false_with_several_metrics_picks_no_best(tmp_path: pathlib.Path) -> None:
    """refit: false with a list of scorers writes cv_results equal to
    scikit-learn's, but no best candidate and no refitted model."""
    data = write_dataset(tmp_path, "wine")
    grid = {"n_neighbors": [1, 5, 15]}
    scoring = ["accuracy", "balanced_accuracy"]
    document = manifest(
        data,
        tmp_path / "out",
        estimator={"class": "sklearn.neighbors.KNeighborsClassifier"},
        param_grid=grid,
        scoring=scoring,
        refit=False,
        sharding={"shards": 2},
    )
    search = GridSearchCV(KNeighborsClassifier(), grid, scoring=scoring, refit=False)

    ours = run_kubegrid(document, tmp_path, via="cli", workers=2)

    assert_same_search(ours, search.fit(data.X, data.y), data.X)
    assert "bestIndex" not in ours.summary and "bestScore" not in ours.summary
    assert not ours.model_path.exists()
    assert "bestEstimator" not in ours.summary["artifacts"]


def test_yaml_null_in_a_grid_stays_none(tmp_path: pathlib.Path) -> None:
    """A YAML null in paramGrid reaches the estimator, cv_results and the
    summary as None, exactly as ``max_depth=None`` in scikit-learn."""
    data = write_dataset(tmp_path, "wine")
    grid = {"max_depth": [None, 1]}
    document = manifest(
        data,
        tmp_path / "out",
        estimator={
            "class": "sklearn.tree.DecisionTreeClassifier",
            "params": {"random_state": 0},
        },
        param_grid=grid,
        cv=3,
    )
    search = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3)

    ours = run_kubegrid(document, tmp_path, via="cli", workers=2)

    assert "- null" in (tmp_path / "search.yaml").read_text()
    assert_same_search(ours, search.fit(data.X, data.y), data.X)
    assert ours.cv_results["params"][0] == {"max_depth": None}
    assert ours.cv_results["param_max_depth"][0] is None
    assert ours.summary["bestParams"] == {"max_depth": None}
    assert joblib.load(ours.model_path).max_depth is None
