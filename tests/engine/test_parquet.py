"""A dataset in Parquet: the same search as from CSV, in the memory of the table.

Parquet keeps the dtypes the table was written with, so scikit-learn gets the
very frame pandas reads back; what differs from CSV is how the bytes become a
table, through Arrow's own allocator.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from tests.engine.searches import (
    Dataset,
    assert_same_search,
    manifest,
    write_dataset,
)
from tests.engine.test_equivalence import run_kubegrid


def test_a_parquet_dataset_gives_scikit_learns_results(tmp_path: pathlib.Path) -> None:
    """cv_results, best candidate and refit model equal GridSearchCV's on the
    frame read back from the same Parquet file."""
    csv = write_dataset(tmp_path, "digits", rows=500)
    path = tmp_path / "digits.parquet"
    csv.frame.to_parquet(path, index=False)
    data = Dataset(path, pd.read_parquet(path))
    grid = {"C": [1.0, 10.0], "gamma": [0.0005, 0.005]}
    document = manifest(
        data,
        tmp_path / "out",
        estimator={"class": "sklearn.svm.SVC"},
        param_grid=grid,
        cv=3,
        sharding={"shards": 2},
    )

    ours = run_kubegrid(document, tmp_path, via="cli", workers=2)

    search = GridSearchCV(SVC(), grid, cv=3).fit(data.X, data.y)
    assert_same_search(ours, search, data.X)


# Run in a fresh interpreter, so that nothing else has used Arrow's allocator.
_READ_AND_MEASURE = textwrap.dedent(
    """
    import sys
    import pandas, pyarrow.parquet
    from kubegrid import data, storage

    def resident() -> int:
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith("VmRSS"))
        return int(line.split()[1]) * 1024

    before = resident()
    frame, _ = data.read_frame(sys.argv[1], "parquet", storage.Location())
    print((resident() - before) / frame.memory_usage(index=False).sum())
    """
)


def test_reading_parquet_keeps_about_the_table_resident(tmp_path: pathlib.Path) -> None:
    """Once read, the process holds the table and little more: Arrow's decoding
    buffers go back to the system before any worker is forked (kept, they were
    about three times the table, inherited by every worker)."""
    path = tmp_path / "wide.parquet"
    values = np.random.default_rng(0).random((500_000, 10))  # 40 MB of float64
    pd.DataFrame(values, columns=[f"x{i}" for i in range(10)]).to_parquet(path)

    done = subprocess.run(
        [sys.executable, "-c", _READ_AND_MEASURE, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )

    growth = float(done.stdout)
    assert 0.9 < growth < 2.0, growth


def test_category_columns_reach_a_booster_that_reads_them(
    tmp_path: pathlib.Path,
) -> None:
    """Parquet keeps pandas' category dtype, which HistGradientBoosting treats
    as categorical: the column is accepted, and the results are GridSearchCV's."""
    frame = write_dataset(tmp_path, "wine").frame
    frame.insert(0, "colour", pd.Categorical(np.where(frame.index % 3, "red", "white")))
    path = tmp_path / "wine.parquet"
    frame.to_parquet(path, index=False)
    data = Dataset(path, pd.read_parquet(path))
    assert isinstance(data.X["colour"].dtype, pd.CategoricalDtype)
    grid = {"max_iter": [5, 10]}
    params = {"random_state": 0}
    document = manifest(
        data,
        tmp_path / "out",
        estimator={
            "class": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": params,
        },
        param_grid=grid,
        cv=3,
    )

    ours = run_kubegrid(document, tmp_path, via="cli", workers=2)

    booster = HistGradientBoostingClassifier(**params)
    search = GridSearchCV(booster, grid, cv=3).fit(data.X, data.y)
    assert_same_search(ours, search, data.X)
