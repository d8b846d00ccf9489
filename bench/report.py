"""Printing the benchmark's results as plain-text tables.

Called by :mod:`bench.cli` with the rows the workload modules return; it only
formats. A measurement that was not taken prints why (for example "not
measured yet"), never a number.
"""

from __future__ import annotations

from typing import Any


def _range(s: dict[str, Any]) -> str:
    return f"{s['min']:.2f}–{s['max']:.2f}"


def comparison(row: dict[str, Any]) -> str:
    """One W1–W3 row: per contender median, spread, efficiency; the ratio."""
    lines = [
        f"{row['workload']}  {row['title']}: {row['n_candidates']} candidates × "
        f"{row['n_splits']} splits = {row['n_tasks']} fits; single-core "
        f"fit+score work {row['single_core_seconds']:.2f} s; {row['cores']} cores",
        f"  {'contender':<13}{'median s':>9}  {'min–max s':<13}{'IQR s':>7}"
        f"{'efficiency':>11}{'cpu s':>8}{'peak PSS MiB':>13}{'best score':>11}"
        f"{'other load':>11}",
    ]
    for name, c in row["contenders"].items():
        w = c["wall"]
        lines.append(
            f"  {name:<13}{w['median']:>9.2f}  {_range(w):<13}"
            f"{w['q3'] - w['q1']:>7.2f}{c['efficiency']:>10.0%} "
            f"{c['cpu_seconds']['median']:>8.1f}{c['peak_pss_mb']:>13.0f}"
            f"{c['best_score']:>11.4f}{c['foreign_load']:>11.2f}"
        )
    lines.append(f"  ratio kubegrid / GridSearchCV (median wall): {row['ratio']:.2f}")
    return "\n".join(lines)


def big_data(rows: list[dict[str, Any]]) -> str:
    """W4: load time and peak memory against the size of the data."""
    lines = [
        "W4  kubegrid on a large table: load once, fork-share across workers",
        f"  {'format':<8}{'file MiB':>9}{'frame MiB':>10}{'load s':>8}"
        f"{'load peak MiB':>14}{'run median s':>13}{'run peak PSS':>13}"
        f"{'PSS/file':>9}{'PSS/frame':>10}",
    ]
    for r in rows:
        lines.append(
            f"  {r['format']:<8}{r['file_mb']:>9.0f}{r['frame_mb']:>10.0f}"
            f"{r['load']['median']:>8.2f}{r['load_peak_mb']:>14.0f}"
            f"{r['run']['median']:>13.2f}{r['run_peak_pss_mb']:>13.0f}"
            f"{r['run_peak_pss_mb'] / r['file_mb']:>9.2f}"
            f"{r['run_peak_pss_mb'] / r['frame_mb']:>10.2f}"
        )
    return "\n".join(lines)


def probe(row: dict[str, Any]) -> str:
    """Planning, status size or API calls: a value, or why there is none."""
    if row.get("value") is None:
        return f"{row['name']}: {row['why']}"
    return f"{row['name']}: {row['text']}"
