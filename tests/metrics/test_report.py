"""The report: every figure drawn, of the stated size, not blank, in the HTML.

Images are read back with matplotlib's PNG reader; a blank or single-colour
figure has (almost) no pixel variance.
"""

from __future__ import annotations

import io
import pathlib
import re

import matplotlib.image
import numpy as np
import pytest

from kubegrid import cli, report, results
from tests.metrics.conftest import Search

EXPECTED_SIZES = {
    # figsize × DPI 100, as report.py draws them.
    "report-heatmap.png": (800, 600),
    "report-scores-by-param.png": (1200, 420),
    "report-fit-time.png": (800, 500),
    "report-confusion.png": (900, 450),
    "report-curves.png": (1100, 500),
}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(matplotlib.image.imread(io.BytesIO(png), format="png"))


def test_every_figure_exists_with_its_size_and_is_not_blank(
    cost_search: Search,
) -> None:
    for name, (width, height) in EXPECTED_SIZES.items():
        image = pixels((cost_search.output / name).read_bytes())
        assert image.shape[:2] == (height, width), name
        assert image[..., :3].var() > 0.01, f"{name} looks blank"


def test_html_inlines_and_links_every_image(cost_search: Search) -> None:
    text = (cost_search.output / results.REPORT).read_text()
    assert "http://" not in text and "https://" not in text
    inline = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(inline) == len(EXPECTED_SIZES)
    for name in EXPECTED_SIZES:
        assert f'href="{name}"' in text, name
    for heading in ("Top 8 candidates", "Holdout", "Failed fits", "tuned"):
        assert heading in text


def test_report_uri_is_in_the_summary(cost_search: Search) -> None:
    artifacts = cost_search.summary()["artifacts"]
    assert artifacts["reportUri"] == f"{cost_search.output}/{results.REPORT}"


def test_kubegrid_run_ends_by_printing_where_the_report_is(
    cost_search: Search,
) -> None:
    """The last lines of a local run name the report's path."""
    report = str(cost_search.output / results.REPORT)
    tail = cost_search.printed.strip().splitlines()[-8:]
    assert any(line.endswith(report) for line in tail), tail


def test_kubegrid_report_redraws_from_the_output_location(
    cost_search: Search, capsys: pytest.CaptureFixture[str]
) -> None:
    (cost_search.output / results.REPORT).unlink()
    assert cli.main(["report", str(cost_search.output)]) == 0
    assert (cost_search.output / results.REPORT).exists()
    assert "report.html (5 figures)" in capsys.readouterr().out


def test_losses_are_drawn_as_losses(cost_search: Search) -> None:
    """The cost is plotted as the positive average cost cv_results negates."""
    table = cost_search.cv_results()
    view = report._View(table, cost_search.summary())
    assert view.label() == "cost (lower is better)"
    np.testing.assert_array_equal(view.scores(), -table["mean_test_cost"])


def test_failed_fits_are_tabled_with_their_error(tmp_path: pathlib.Path) -> None:
    """A candidate whose fits fail appears with its count and error line."""
    table = {
        "params": [{"C": 1.0}, {"C": -1.0}],
        "param_C": np.ma.MaskedArray(np.array([1.0, -1.0], dtype=object)),
        "mean_test_score": np.array([0.9, np.nan]),
        "std_test_score": np.array([0.01, np.nan]),
        "rank_test_score": np.array([1, 2], dtype=np.int32),
        "mean_fit_time": np.array([0.1, 0.01]),
        "n_failed_fits": np.array([0, 3]),
    }
    summary = {
        "name": "failing",
        "metrics": ["score"],
        "refitMetric": "score",
        "nFailedFits": 3,
        "fitErrors": [{"error": "ValueError: C must be positive", "count": 3}],
        "bestIndex": 0,
    }
    images = report.figures(table, summary, None)
    text = report.render_html(table, summary, None, images)
    assert "ValueError: C must be positive" in text
    assert "{&quot;C&quot;: -1.0}" in text


def test_figures_drawn_in_forked_processes_equal_those_drawn_inline(
    cost_search: Search,
) -> None:
    """The reducer's parallel drawing gives the very PNGs a serial one does."""
    table, summary = cost_search.cv_results(), cost_search.summary()
    inline = report.search_figures(table, summary)
    with report.drawing(table, summary) as wait:
        forked = wait()
    assert [i.name for i in forked] == [i.name for i in inline]
    assert len(inline) == 3
    for drawn, expected in zip(forked, inline, strict=True):
        assert drawn.size == expected.size
        assert drawn.png == expected.png, drawn.name


def test_one_cpu_draws_when_asked(
    cost_search: Search, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report.parallel, "cpus", lambda: 1)
    table, summary = cost_search.cv_results(), cost_search.summary()
    with report.drawing(table, summary) as wait:
        names = [i.name for i in wait()]
    assert names == [i.name for i in report.search_figures(table, summary)]


def test_a_figure_failing_in_its_process_reaches_the_caller(
    cost_search: Search, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drawing error is raised where the reducer waits, to be reported there."""

    def broken(view: object) -> None:
        raise RuntimeError("no figure today")

    figures = [report._heatmap, broken, report._fit_time]
    monkeypatch.setattr(report, "_SEARCH_FIGURES", figures)
    with (
        report.drawing(cost_search.cv_results(), cost_search.summary()) as wait,
        pytest.raises(RuntimeError, match="no figure today"),
    ):
        wait()


def test_a_log_axis_of_grid_values_is_labelled_at_those_values() -> None:
    """A few log-spaced values are the ticks, in plain numbers, no minor ticks;
    many values get plain labels too, never mathtext."""
    few = [0.1, 1.0, 10.0, 1000.0]
    many = [10.0**k for k in range(-8, 9)]
    fig = report._figure(6.0, 4.0)
    left, right = fig.subplots(1, 2)
    report._log_x(left, few)
    report._log_x(right, many)
    left.plot(few, [1, 2, 3, 4])
    right.plot(many, range(len(many)))
    fig.savefig(io.BytesIO(), format="png")

    assert left.get_xscale() == right.get_xscale() == "log"
    assert list(left.get_xticks()) == few
    assert [t.get_text() for t in left.get_xticklabels()] == ["0.1", "1", "10", "1000"]
    for ax in (left, right):
        assert len(ax.xaxis.get_minorticklocs()) == 0
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert any(labels) and not any("$" in text for text in labels)
