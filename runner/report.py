"""The results report: ``report.html`` with its figures inline, PNGs beside it.

Called by :func:`kubegrid.reducer.reduce`, right after cv_results and the
holdout evaluation are written, and by ``kubegrid report`` to draw it again
from an output location. It reads only artifacts (cv_results, summary.json,
holdout.json), never the data, so a report can be re-created anywhere.

Plots show every metric in its own units: a loss such as a cost matrix's
average cost is drawn as the cost, lower is better, although cv_results holds
it negated (see :mod:`kubegrid.metrics`). matplotlib runs with the Agg
backend: no display, no network; the HTML embeds each PNG as base64.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import html
import io
import json
import logging
import math
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import matplotlib

# No display in a pod: pick the file-only backend before anything (such as
# scikit-learn's ConfusionMatrixDisplay) imports pyplot.
matplotlib.use("Agg")

import numpy as np
from matplotlib import colormaps, patches, ticker
from matplotlib.figure import Figure

from kubegrid import parallel, results
from kubegrid.storage import Store

logger = logging.getLogger(__name__)

DPI = 100
# A heatmap with more rows or columns than this is unreadable; random searches
# draw continuous values and get the per-parameter plot instead.
MAX_HEATMAP_VALUES = 15
MAX_PARAM_PANELS = 8
TOP_CANDIDATES = 10


@dataclass(frozen=True)
class Image:
    """One figure: its file name beside the report, title, and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes
    size: tuple[int, int]


# --------------------------------------------------------------------------
# Entry points


def write(
    store: Store,
    table: dict[str, Any],
    summary: dict[str, Any],
    holdout: dict[str, Any] | None,
    search: list[Image] | None = None,
) -> list[str]:
    """Draw the report and write it with its PNGs; returns the names written.

    ``search`` holds the search's figures when they were drawn already (see
    :func:`drawing`); otherwise they are drawn here.
    """
    if search is None:
        search = search_figures(table, summary)
    images = search + holdout_figures(holdout)
    for image in images:
        store.write(image.name, image.png)
    store.write(results.REPORT, render_html(table, summary, holdout, images).encode())
    return [results.REPORT, *(image.name for image in images)]


def rebuild(store: Store) -> list[str]:
    """Draw the report again from the artifacts already in ``store``."""
    table = results.read_cv_results(store)
    summary = results.read_summary(store)
    holdout = None
    if store.exists(results.HOLDOUT):
        holdout = json.loads(store.read(results.HOLDOUT))
    return write(store, table, summary, holdout)


def figures(
    table: dict[str, Any], summary: dict[str, Any], holdout: dict[str, Any] | None
) -> list[Image]:
    """Every figure the data allows, in reading order."""
    return search_figures(table, summary) + holdout_figures(holdout)


def search_figures(table: dict[str, Any], summary: dict[str, Any]) -> list[Image]:
    """The figures drawn from cv_results alone, in reading order."""
    view = _View(table, summary)
    drawn = [draw(view) for draw in _SEARCH_FIGURES]
    return [image for image in drawn if image is not None]


def holdout_figures(holdout: dict[str, Any] | None) -> list[Image]:
    """The figures of the refit model's evaluation on the test rows."""
    drawn = []
    if holdout and holdout.get("confusionMatrix"):
        drawn.append(_confusion(holdout))
    if holdout and holdout.get("curves"):
        drawn.append(_curves(holdout))
    return drawn


@contextlib.contextmanager
def drawing(
    table: dict[str, Any], summary: dict[str, Any]
) -> Iterator[Callable[[], list[Image]]]:
    """Draw the search's figures while the caller goes on; yields a call that
    waits for them.

    The figures need only cv_results and the best index, so the reducer has
    them drawn while it refits the best candidate. With two CPUs or more each
    figure gets a forked process (they take about a second each, mostly in
    matplotlib's layout); with one they are drawn when asked for.
    """
    workers = drawing_processes()
    if not workers:
        yield lambda: search_figures(table, summary)
        return

    # The forked processes inherit the table instead of receiving a pickle.
    global _drawing
    _drawing = (table, summary)
    fork = multiprocessing.get_context("fork")
    pool = concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=fork,
        initializer=parallel.forked_worker,
        initargs=(1, os.getpid()),
    )
    try:
        with parallel.frozen_heap():  # the processes are forked by the first submit
            futures = [pool.submit(_draw_one, i) for i in range(len(_SEARCH_FIGURES))]
    finally:
        _drawing = None

    def wait() -> list[Image]:
        drawn = [future.result() for future in futures]
        return [image for image in drawn if image is not None]

    try:
        yield wait
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def drawing_processes() -> int:
    """How many processes :func:`drawing` forks: 0 when it draws inline."""
    workers = min(parallel.cpus(), len(_SEARCH_FIGURES))
    return workers if workers >= 2 else 0


# Set in the parent before forking; read by the processes it forks.
_drawing: tuple[dict[str, Any], dict[str, Any]] | None = None


def _draw_one(index: int) -> Image | None:
    assert _drawing is not None
    # A warning from a figure helps nobody in a child whose output is unseen.
    warnings.simplefilter("ignore")
    return _SEARCH_FIGURES[index](_View(*_drawing))


# --------------------------------------------------------------------------
# Reading cv_results in the metric's own units


class _View:
    """cv_results seen through one metric, in that metric's own units."""

    def __init__(self, table: dict[str, Any], summary: dict[str, Any]) -> None:
        self.table = table
        self.summary = summary
        metrics = summary.get("metrics") or ["score"]
        self.metric: str = summary.get("refitMetric") or metrics[0]
        self.metrics: list[str] = list(metrics)
        self.directions: dict[str, bool] = summary.get("greaterIsBetter") or {}
        self.n = len(table["params"])
        self.params = [k[len("param_") :] for k in table if k.startswith("param_")]

    def higher_is_better(self, metric: str | None = None) -> bool:
        return bool(self.directions.get(metric or self.metric, True))

    def scores(self, kind: str = "test", metric: str | None = None) -> np.ndarray:
        """Mean scores, negated back to the loss for lower-is-better metrics."""
        metric = metric or self.metric
        values = np.asarray(self.table[f"mean_{kind}_{metric}"], dtype=float)
        return values if self.higher_is_better(metric) else -values

    def stds(self, kind: str = "test", metric: str | None = None) -> np.ndarray:
        metric = metric or self.metric
        return np.asarray(self.table[f"std_{kind}_{metric}"], dtype=float)

    def name(self, metric: str | None = None) -> str:
        """A single scorer's own name (accuracy) rather than the key ``score``."""
        metric = metric or self.metric
        if metric != "score":
            return metric
        return str((self.summary.get("scorers") or {}).get(metric, metric))

    def label(self, metric: str | None = None) -> str:
        better = "higher" if self.higher_is_better(metric) else "lower"
        return f"{self.name(metric)} ({better} is better)"

    def values(self, param: str) -> list[Any]:
        """Each candidate's value of ``param``; a missing one is _MISSING."""
        column = self.table[f"param_{param}"]
        mask = np.ma.getmaskarray(column)
        data = np.ma.getdata(column)
        return [_MISSING if m else _plain(v) for v, m in zip(data, mask, strict=True)]

    def distinct(self, param: str) -> list[Any]:
        return _ordered({_key(v): v for v in self.values(param) if v is not _MISSING})

    def best(self) -> int | None:
        index = self.summary.get("bestIndex")
        if index is not None:
            return int(index)
        ranks = np.asarray(self.table[f"rank_test_{self.metric}"])
        return int(np.argmin(ranks)) if len(ranks) else None

    def varying(self) -> list[str]:
        """Parameters with two or more values, the most varied first."""
        counts = {p: len(self.distinct(p)) for p in self.params}
        return sorted((p for p in counts if counts[p] > 1), key=lambda p: -counts[p])


_MISSING = object()


# --------------------------------------------------------------------------
# Figures of the search


def _heatmap(view: _View) -> Image | None:
    """Mean test score over the two parameters that vary most."""
    varying = view.varying()
    if len(varying) < 2:
        return None
    rows, cols = varying[1], varying[0]
    row_values, col_values = view.distinct(rows), view.distinct(cols)
    if max(len(row_values), len(col_values)) > MAX_HEATMAP_VALUES:
        return None

    # Each cell holds the best candidate having both values; with more
    # parameters than two, the others take whatever value did best there.
    grid = np.full((len(row_values), len(col_values)), np.nan)
    scores = view.scores()
    pick = np.fmax if view.higher_is_better() else np.fmin
    row_of = {_key(v): i for i, v in enumerate(row_values)}
    col_of = {_key(v): j for j, v in enumerate(col_values)}
    for r, c, s in zip(view.values(rows), view.values(cols), scores, strict=True):
        if r is _MISSING or c is _MISSING:
            continue
        i, j = row_of[_key(r)], col_of[_key(c)]
        grid[i, j] = pick(grid[i, j], s)

    fig = _figure(8.0, 6.0)
    ax = fig.add_subplot()
    cmap = colormaps["viridis" if view.higher_is_better() else "viridis_r"]
    cmap = cmap.with_extremes(bad="#d9d9d9")
    low, high, extend = _colour_range(grid, view.higher_is_better())
    shown = ax.imshow(
        np.ma.masked_invalid(grid), cmap=cmap, aspect="auto", vmin=low, vmax=high
    )
    fig.colorbar(shown, ax=ax, label=f"mean test {view.label()}", extend=extend)
    _cell_labels(ax, grid, shown)
    _mark_best_cell(ax, grid, view.higher_is_better())
    ax.set_xticks(range(len(col_values)), [_fmt(v) for v in col_values])
    ax.set_yticks(range(len(row_values)), [_fmt(v) for v in row_values])
    ax.set_xlabel(_axis_name(cols, col_values))
    ax.set_ylabel(_axis_name(rows, row_values))
    others = len(view.params) > 2
    ax.set_title(
        f"Mean test {view.name()} by {cols} and {rows}"
        + (" (best over the other parameters)" if others else "")
    )
    caption = (
        "Each cell is the cross-validated mean test score; the outlined cell is "
        "the best. The colours span the better three quarters of the cells, so "
        "the worst share one colour: read their numbers. Grey cells had no "
        "candidate or only failed fits."
    )
    return _image(results.HEATMAP_PNG, "Score heatmap", caption, fig)


def _colour_range(grid: np.ndarray, higher: bool) -> tuple[float, float, str]:
    """Colours for the better three quarters of cells; the worst saturate.

    A few failing corners (C too small, gamma too large) would otherwise take
    the whole scale and paint every good cell the same colour.
    """
    finite = grid[np.isfinite(grid)]
    if finite.size < 4:
        return (
            (float(finite.min()), float(finite.max()), "neither")
            if (finite.size)
            else (0.0, 1.0, "neither")
        )
    if higher:
        low = float(np.percentile(finite, 25))
        return low, float(finite.max()), "min" if finite.min() < low else "neither"
    high = float(np.percentile(finite, 75))
    return float(finite.min()), high, "max" if finite.max() > high else "neither"


def _cell_labels(ax: Any, grid: np.ndarray, shown: Any) -> None:
    if grid.size > 120:
        return
    for (i, j), value in np.ndenumerate(grid):
        if math.isfinite(value):
            # Dark text on light cells and light on dark, whichever way the
            # colour map runs (it is reversed for lower-is-better metrics).
            red, green, blue, _ = shown.cmap(shown.norm(value))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            color = "black" if light else "white"
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", color=color)


def _mark_best_cell(ax: Any, grid: np.ndarray, higher: bool) -> None:
    if not np.isfinite(grid).any():
        return
    flat = np.nanargmax(grid) if higher else np.nanargmin(grid)
    i, j = np.unravel_index(flat, grid.shape)
    ax.add_patch(
        patches.Rectangle(
            (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5
        )
    )


def _scores_by_param(view: _View) -> Image | None:
    """Mean test score (± 1 std) against each parameter that varies."""
    params = view.varying()[:MAX_PARAM_PANELS]
    if not params:
        return None
    columns = min(2, len(params))
    rows = math.ceil(len(params) / columns)
    fig = _figure(6.0 * columns, 4.2 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, param in zip(axes, params, strict=False):
        _param_panel(ax, view, param)
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    caption = (
        "Lines follow one parameter with every other parameter held at the best "
        "candidate's value; the band is ± one standard deviation over the folds. "
        "When no such slice exists (random search), every candidate is a dot."
    )
    return _image(results.SCORES_PNG, "Score by parameter", caption, fig)


def _param_panel(ax: Any, view: _View, param: str) -> None:
    best = view.best()
    values = view.values(param)
    members = _slice_through(view, param, best)
    distinct = {_key(values[i]) for i in members}
    positions, numeric = _positions(view.distinct(param))
    mean, std = view.scores(), view.stds()
    if len(distinct) >= 2 and numeric:
        order = sorted(members, key=lambda i: positions[_key(values[i])])
        x = np.array([positions[_key(values[i])] for i in order])
        _band(ax, x, mean[order], std[order], "test", "C0")
        if f"mean_train_{view.metric}" in view.table:
            train = view.scores("train")
            _band(ax, x, train[order], view.stds("train")[order], "train", "C1")
        title = f"{param} (others at best)"
    elif len(distinct) >= 2:
        # Unordered values: points with error bars, no line between them.
        x = np.array([positions[_key(values[i])] for i in members])
        ax.errorbar(
            x,
            mean[members],
            yerr=std[members],
            fmt="o",
            capsize=6,
            label="test mean ± 1 std",
        )
        ax.set_xlim(-0.5, len(view.distinct(param)) - 0.5)
        title = f"{param} (others at best)"
    else:
        present = [i for i, v in enumerate(values) if v is not _MISSING]
        x = np.array([positions[_key(values[i])] for i in present])
        ax.errorbar(x, mean[present], yerr=std[present], fmt="o", ms=4, alpha=0.6)
        title = f"{param} (all candidates)"
    if best is not None and values[best] is not _MISSING:
        ax.axvline(positions[_key(values[best])], color="red", ls="--", lw=1)
    _param_axis(ax, param, view.distinct(param), positions, numeric)
    ax.set_title(title)
    ax.set_ylabel(f"mean {view.label()}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")


def _slice_through(view: _View, param: str, best: int | None) -> list[int]:
    """Candidates equal to the best one in every parameter but ``param``."""
    if best is None:
        return []
    others = [p for p in view.params if p != param]
    columns = {p: view.values(p) for p in others}
    return [
        i
        for i in range(view.n)
        if all(_key(columns[p][i]) == _key(columns[p][best]) for p in others)
        and view.values(param)[i] is not _MISSING
    ]


def _band(
    ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, label: str, color: str
) -> None:
    ax.plot(x, mean, marker="o", color=color, label=f"{label} mean ± 1 std")
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)


def _fit_time(view: _View) -> Image:
    """Mean fit time against mean test score: what each point of score costs."""
    fig = _figure(8.0, 5.0)
    ax = fig.add_subplot()
    seconds = np.asarray(view.table["mean_fit_time"], dtype=float)
    scores = view.scores()
    ax.scatter(seconds, scores, s=25, alpha=0.7, label="candidate")
    best = view.best()
    if best is not None:
        ax.scatter(
            seconds[best], scores[best], s=180, marker="*", color="red", label="best"
        )
    # Only drawn points may choose the scale: a log axis with none fails.
    positive = seconds[(seconds > 0) & np.isfinite(scores)]
    if positive.size and positive.max() / positive.min() > 20:
        _log_x(ax)
    ax.set_xlabel("mean fit time per fold (seconds)")
    ax.set_ylabel(f"mean test {view.label()}")
    ax.set_title("Fit time against score")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    caption = "One point per candidate; candidates whose fits all failed are absent."
    return _image(results.FIT_TIME_PNG, "Fit time and score", caption, fig)


# In reading order.
_SEARCH_FIGURES: list[Callable[[_View], Image | None]] = [
    _heatmap,
    _scores_by_param,
    _fit_time,
]


# --------------------------------------------------------------------------
# Figures of the holdout evaluation


def _confusion(holdout: dict[str, Any]) -> Image:
    """Confusion matrix on the test set, and at the tuned threshold if any."""
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = [str(v) for v in holdout["labels"]]
    panels = [("default threshold", holdout["confusionMatrix"])]
    threshold = holdout.get("threshold")
    if threshold:
        metric = threshold["metric"]
        panels = [
            (
                f"{which} threshold {threshold[which]['threshold']:.3g}\n"
                f"{metric} = {threshold[which]['metricValue']:.4g}",
                matrix,
            )
            for which, matrix in (
                ("default", holdout["confusionMatrix"]),
                ("tuned", threshold["confusionMatrix"]),
            )
        ]
    size = max(4.5, 0.45 * len(labels) + 2.5)
    fig = _figure(size * len(panels), size)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    for ax, (title, matrix) in zip(axes, panels, strict=True):
        shown = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=labels)
        shown.plot(ax=ax, cmap="Blues", colorbar=False, values_format="d")
        ax.set_title(f"Test set, {title}" if threshold else "Test set")
    caption = (
        f"Rows are the true class, columns the predicted one, over the "
        f"{holdout['nSamples']} held-out rows."
    )
    if threshold:
        caption += (
            f" The threshold applies to the {threshold['responseMethod']} score of "
            f"class {threshold['positiveLabel']!r}: above it, that class is "
            "predicted."
        )
    return _image(results.CONFUSION_PNG, "Holdout confusion matrix", caption, fig)


def _curves(holdout: dict[str, Any]) -> Image:
    """ROC and precision-recall curves of the positive class on the test set."""
    curves = holdout["curves"]
    roc, pr = curves["roc"], curves["precisionRecall"]
    fig = _figure(11.0, 5.0)
    left, right = fig.subplots(1, 2)
    left.plot(roc["fpr"], roc["tpr"], label=f"model (AUC = {roc['auc']:.3f})")
    left.plot([0, 1], [0, 1], color="grey", ls=":", label="chance")
    left.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    right.plot(
        pr["recall"],
        pr["precision"],
        label=f"model (AP = {pr['averagePrecision']:.3f})",
    )
    right.axhline(pr["prevalence"], color="grey", ls=":", label="chance")
    right.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    _operating_points(left, right, holdout)
    for ax in (left, right):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is left else "lower left", fontsize="small")
    caption = (
        f"Positive class {curves['positiveLabel']!r}, scored by "
        f"{curves['responseMethod']}, on the held-out rows. Markers show where "
        "the default and the tuned thresholds operate."
    )
    return _image(results.CURVES_PNG, "Holdout ROC and precision-recall", caption, fig)


def _operating_points(left: Any, right: Any, holdout: dict[str, Any]) -> None:
    points = [("default threshold", holdout["confusionMatrix"], "o")]
    if holdout.get("threshold"):
        points.append(("tuned threshold", holdout["threshold"]["confusionMatrix"], "*"))
    for label, matrix, marker in points:
        (tn, fp), (fn, tp) = np.asarray(matrix, dtype=float)
        recall = tp / (tp + fn) if tp + fn else 0.0
        precision = tp / (tp + fp) if tp + fp else 1.0
        fpr = fp / (fp + tn) if fp + tn else 0.0
        style = {"marker": marker, "ms": 11, "ls": "none", "label": label}
        left.plot([fpr], [recall], color="red" if marker == "*" else "black", **style)
        right.plot(
            [recall], [precision], color="red" if marker == "*" else "black", **style
        )


# --------------------------------------------------------------------------
# Helpers for figures


def _figure(width: float, height: float) -> Figure:
    # No pyplot state: figures are created and dropped, safe in any process.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _image(name: str, title: str, caption: str, fig: Figure) -> Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    width, height = fig.get_size_inches() * DPI
    return Image(name, title, caption, buffer.getvalue(), (round(width), round(height)))


def _positions(values: list[Any]) -> tuple[dict[Any, float], bool]:
    """Where each value sits on the x axis: itself when numeric, else its index."""
    if values and all(_is_number(v) for v in values):
        return {_key(v): float(v) for v in values}, True
    return {_key(v): float(i) for i, v in enumerate(values)}, False


def _param_axis(
    ax: Any, param: str, values: list[Any], positions: dict[Any, float], numeric: bool
) -> None:
    if numeric and _log_spaced(values):
        _log_x(ax, values)
    elif not numeric:
        ax.set_xticks([positions[_key(v)] for v in values], [_fmt(v) for v in values])
    ax.set_xlabel(_axis_name(param, values))


def _log_x(ax: Any, values: list[Any] | None = None) -> None:
    """A log scale labelled in plain numbers.

    A grid's few values are the ticks themselves: the reader sees what was
    tried. Minor ticks and matplotlib's 10^n labels are left out; they add
    nothing here and were most of a figure's drawing time.
    """
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    if values is not None and len(values) <= MAX_HEATMAP_VALUES:
        ax.set_xticks([float(v) for v in values], [_fmt(v) for v in values])
    else:
        ax.xaxis.set_major_formatter(ticker.LogFormatter(labelOnlyBase=True))


def _axis_name(param: str, values: list[Any]) -> str:
    return f"{param} (log scale)" if _log_spaced(values) else param


def _log_spaced(values: list[Any]) -> bool:
    """Positive numbers spanning two decades or more read best on a log axis."""
    if len(values) < 3 or not all(_is_number(v) and v > 0 for v in values):
        return False
    return bool(max(values) / min(values) >= 100)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered(by_key: dict[Any, Any]) -> list[Any]:
    values = list(by_key.values())
    if all(_is_number(v) for v in values):
        return sorted(values)
    return sorted(values, key=_fmt)


def _key(value: Any) -> Any:
    """A hashable stand-in for a parameter value (lists, dicts, estimators)."""
    if value is _MISSING:
        return ("missing",)
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))
    return (type(value).__name__ if not _is_number(value) else "number", value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------
# HTML


def render_html(
    table: dict[str, Any],
    summary: dict[str, Any],
    holdout: dict[str, Any] | None,
    images: list[Image],
) -> str:
    """The whole page, with every image inline: it opens offline, anywhere."""
    view = _View(table, summary)
    sections = [
        _overview(view),
        _figure_section(
            "The search", [i for i in images if "holdout" not in i.title.lower()]
        ),
        _top_table(view),
        _holdout_section(
            view, holdout, [i for i in images if "holdout" in i.title.lower()]
        ),
        _failures(view),
    ]
    name = html.escape(str(summary.get("name", "search")))
    return _PAGE.format(title=name, body="\n".join(s for s in sections if s))


def _overview(view: _View) -> str:
    s = view.summary
    rows = [
        ("candidates × splits", f"{s.get('nCandidates')} × {s.get('nSplits')}"),
        ("training rows", s.get("nSamples")),
        ("failed fits", s.get("nFailedFits", 0)),
        ("refit metric", view.label()),
        ("metrics", "; ".join((s.get("scorers") or {}).values()) or view.metric),
    ]
    if "bestParams" in s:
        best = view.best()
        score = view.scores()[best] if best is not None else None
        rows += [
            ("best parameters", json.dumps(s["bestParams"], default=str)),
            ("best mean test score", _fmt(score) if score is not None else "-"),
        ]
    note = ""
    if not all(view.higher_is_better(m) for m in view.metrics):
        lower = [m for m in view.metrics if not view.higher_is_better(m)]
        note = (
            f"<p class=note>{html.escape(', '.join(lower))}: lower is better. This "
            "report shows them as they are; cv_results stores them negated, as "
            "scikit-learn does for its neg_* scorers.</p>"
        )
    name = html.escape(str(s.get("name", "search")))
    return f"<h1>{name}</h1>{_kv_table(rows)}{note}"


def _figure_section(heading: str, images: list[Image]) -> str:
    if not images:
        return ""
    parts = [f"<h2>{html.escape(heading)}</h2>"]
    for image in images:
        data = base64.b64encode(image.png).decode()
        name = html.escape(image.name)
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{name}" '
            f"width={image.size[0]} height={image.size[1]}>"
            f"<figcaption><b>{html.escape(image.title)}.</b> "
            f'{html.escape(image.caption)} <a href="{name}">{name}</a>'
            "</figcaption></figure>"
        )
    return "\n".join(parts)


def _top_table(view: _View) -> str:
    ranks = np.asarray(view.table[f"rank_test_{view.metric}"])
    order = np.argsort(ranks, kind="stable")[:TOP_CANDIDATES]
    header = ["rank", *[view.label(m) for m in view.metrics], "fit s", "params"]
    rows = []
    for i in order:
        cells = [str(ranks[i])]
        for metric in view.metrics:
            mean, std = view.scores(metric=metric)[i], view.stds(metric=metric)[i]
            cells.append(f"{_fmt(float(mean))} ± {_fmt(float(std))}")
        cells.append(_fmt(float(view.table["mean_fit_time"][i])))
        cells.append(json.dumps(view.table["params"][i], default=str))
        rows.append(cells)
    title = f"Top {len(order)} candidates by {html.escape(view.metric)}"
    return f"<h2>{title}</h2>{_grid_table(header, rows)}"


def _holdout_section(
    view: _View, holdout: dict[str, Any] | None, images: list[Image]
) -> str:
    if not holdout:
        return ""
    parts = [f"<h2>Holdout: {holdout['nSamples']} rows kept out of the search</h2>"]
    values = holdout.get("metricValues", {})
    parts.append(
        _grid_table(
            ["metric", "value on the test set"],
            [[view.label(k), _fmt(float(v))] for k, v in values.items()],
        )
    )
    threshold = holdout.get("threshold")
    if threshold:
        metric = threshold["metric"]
        parts.append(
            f"<h3>Decision threshold tuned for {html.escape(view.label(metric))}</h3>"
        )
        parts.append(
            _grid_table(
                ["threshold", "value", f"{metric} on the test set"],
                [
                    [
                        which,
                        _fmt(threshold[which]["threshold"]),
                        _fmt(threshold[which]["metricValue"]),
                    ]
                    for which in ("default", "tuned")
                ],
            )
        )
    parts.append(_figure_section("Holdout figures", images).replace("<h2>", "<h3>", 1))
    if "classificationReport" in holdout:
        parts.append(_classification_table(holdout["classificationReport"]))
    if "residuals" in holdout:
        rows = [[k, _fmt(float(v))] for k, v in holdout["residuals"].items()]
        parts.append("<h3>Residuals (true − predicted)</h3>")
        parts.append(_grid_table(["statistic", "value"], rows))
    return "\n".join(parts)


def _classification_table(report: dict[str, Any]) -> str:
    header = ["class", "precision", "recall", "f1-score", "support"]
    rows = []
    for label, stats in report.items():
        if isinstance(stats, dict):
            rows.append([label, *(_fmt(float(stats[k])) for k in header[1:])])
        else:
            rows.append([label, "", "", _fmt(float(stats)), ""])
    return f"<h3>Classification report</h3>{_grid_table(header, rows)}"


def _failures(view: _View) -> str:
    errors = view.summary.get("fitErrors") or []
    failed = np.asarray(view.table.get("n_failed_fits", np.zeros(view.n)))
    if not errors and not failed.any():
        return "<h2>Failed fits</h2><p>None: every fit succeeded.</p>"
    parts = ["<h2>Failed fits</h2>"]
    if errors:
        parts.append(
            _grid_table(
                ["count", "error (last line)"],
                [[str(e["count"]), e["error"]] for e in errors],
            )
        )
    rows = [
        [str(int(failed[i])), json.dumps(view.table["params"][i], default=str)]
        for i in np.flatnonzero(failed)
    ]
    parts.append(_grid_table(["failed folds", "candidate params"], rows))
    return "\n".join(parts)


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table class=kv>{body}</table>"


def _grid_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>kubegrid report: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px;
  color: #222; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left;
  vertical-align: top; }}
thead th, table.kv th {{ background: #f2f2f2; }}
figure {{ margin: 1.5em 0; }}
img {{ max-width: 100%; height: auto; border: 1px solid #eee; }}
figcaption {{ font-size: 0.9em; color: #444; max-width: 60em; }}
.note {{ color: #555; font-size: 0.9em; }}
</style></head>
<body>
{body}
</body></html>
"""
