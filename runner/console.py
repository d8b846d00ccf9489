"""What ``kubegrid run`` shows a person at a terminal: plan, progress, outcome.

Called by the CLI only; everything else logs instead of printing.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from kubegrid.context import SearchContext

_out = Console()
_err = Console(stderr=True)


def warn(message: str) -> None:
    # One line per warning, never wrapped: stderr is often a log, not a screen.
    # The message is text, not markup: a "[name]" in it must print as written.
    _err.print(
        f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
    )


def plan(ctx: SearchContext) -> None:
    p = ctx.plan
    _err.print(
        f"{ctx.manifest.metadata.name}: {p.n_candidates} candidates × {p.n_splits} "
        f"splits = {p.n_tasks} fits in {p.n_shards} shards, on "
        f"{ctx.data.n_samples} rows",
        highlight=False,
    )


@contextlib.contextmanager
def progress(total: int, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar fed by ``advance(done, total)``; silent when not a TTY."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    bar = Progress(
        TextColumn("fits"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=_err,
        transient=True,
    )
    with bar:
        task = bar.add_task("fits", total=total)
        yield lambda done, total: bar.update(task, completed=done)


def _plain(value: Any) -> Any:
    """numpy scalars as the Python numbers they hold, for printing."""
    return value.item() if hasattr(value, "item") else repr(value)


def outcome(ctx: SearchContext, summary: dict[str, Any], top: int = 5) -> None:
    """The best candidates and where every artifact is."""
    from kubegrid import results  # pyarrow, needed only once results exist

    store = ctx.output()
    table = results.read_cv_results(store)
    metric = summary.get("refitMetric") or ctx.spec.metric_names[0]
    # A single scorer's column is "score"; people know it by the scorer's name.
    label = (summary.get("scorers") or {}).get(metric, metric)
    ranked = sorted(
        range(len(table["params"])), key=lambda i: int(table[f"rank_test_{metric}"][i])
    )
    view = Table(title=f"top candidates by {label}")
    view.add_column("rank", justify="right")
    view.add_column(f"mean_test_{metric}", justify="right")
    view.add_column("std", justify="right")
    view.add_column("params")
    for i in ranked[:top]:
        view.add_row(
            str(table[f"rank_test_{metric}"][i]),
            f"{table[f'mean_test_{metric}'][i]:.6f}",
            f"{table[f'std_test_{metric}'][i]:.6f}",
            str(table["params"][i]),
        )
    _out.print(view)
    if summary.get("nFailedFits"):
        warn(f"{summary['nFailedFits']} fits failed: {summary['fitErrors']}")
    for seen in summary.get("fitWarnings") or []:
        warn(f"in {seen['tasks']} of {summary['nTasks']} fits: {seen['warning']}")
    if "bestParams" in summary:
        best = json.loads(json.dumps(summary["bestParams"], default=_plain))
        _out.print(f"best params: {best}", highlight=False)
        _out.print(f"best score ({label}): {summary['bestScore']}", highlight=False)
    if "holdout" in summary:
        _holdout(summary["holdout"])
    for name, uri in summary["artifacts"].items():
        _out.print(f"{name}: {uri}", highlight=False)


def _holdout(brief: dict[str, Any]) -> None:
    """The refit model on the test rows, each metric in its own units."""
    values = ", ".join(f"{k} {v:.6g}" for k, v in brief["metricValues"].items())
    _out.print(f"holdout ({brief['nSamples']} rows): {values}", highlight=False)
    threshold = brief.get("threshold")
    if threshold:
        default, tuned = threshold["default"], threshold["tuned"]
        _out.print(
            f"threshold for {threshold['metric']}: tuned {tuned['threshold']:.4g} "
            f"gives {tuned['metricValue']:.6g}, default {default['threshold']:.4g} "
            f"gives {default['metricValue']:.6g}",
            highlight=False,
        )
