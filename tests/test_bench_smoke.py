"""The benchmark runs end to end and reports well-formed rows.

Only the shape of the result is checked, never a time: the benchmark
measures, tests check behaviour.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_quick_w3_reports_both_contenders_with_ratio_and_efficiency(
    tmp_path: pathlib.Path,
) -> None:
    """`python -m bench --quick --only W3` gives one row per contender."""
    out = tmp_path / "result.json"
    command = [
        sys.executable, "-m", "bench", "--quick", "--repeats", "1",
        "--only", "W3", "--cache", str(tmp_path / "cache"), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=540
    )
    assert done.returncode == 0, done.stderr[-3000:]

    result = json.loads(out.read_text())
    [row] = result["comparisons"]
    assert row["workload"] == "W3"
    assert row["n_splits"] == 5
    assert row["n_tasks"] == row["n_candidates"] * 5
    assert set(row["contenders"]) == {"GridSearchCV", "kubegrid"}
    for contender in row["contenders"].values():
        wall = contender["wall"]
        assert len(wall["values"]) == 1
        assert wall["min"] <= wall["median"] <= wall["max"]
        assert math.isfinite(contender["efficiency"])
        assert contender["efficiency"] > 0
    # Both contenders searched the same grid on the same splits.
    scores = {c["best_score"] for c in row["contenders"].values()}
    assert len(scores) == 1 or math.isclose(*scores, rel_tol=1e-9)
    assert math.isfinite(row["ratio"]) and row["ratio"] > 0
    assert "ratio kubegrid / GridSearchCV" in done.stdout
    assert result["probes"] == []
