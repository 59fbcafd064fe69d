"""Figures for an experiment report: lift per metric with intervals, cumulative lift over days.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no global state,
no display needed), so they are safe in servers, tests and threads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments.lift import LiftResult
from experiments.report import Report

_SIG, _NOT_SIG = "tab:green", "tab:gray"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_lift(results: Sequence[LiftResult], relative: bool = True) -> Figure:
    """One horizontal bar per (metric, treatment): the lift (%) or difference with its interval.

    Significant results (p < alpha) are green, others gray; a dashed line marks no effect.
    """
    if not results:
        raise ValueError("plot_lift needs at least one result")
    fig = _new_figure(7.0, 1.2 + 0.45 * len(results))
    ax = fig.add_subplot()
    scale = 100.0 if relative else 1.0
    for i, r in enumerate(results):
        est, (lo, hi) = (r.rel_lift, r.rel_ci) if relative else (r.diff, r.diff_ci)
        if not all(math.isfinite(v) for v in (est, lo, hi)):
            continue  # e.g. relative lift with a zero control mean
        color = _SIG if r.significant else _NOT_SIG
        ax.errorbar(
            est * scale, i, xerr=[[(est - lo) * scale], [(hi - est) * scale]],
            fmt="o", color=color, capsize=4, lw=2,
        )
    ax.axvline(0.0, color="black", ls="--", lw=1)
    ax.set_yticks(range(len(results)), [f"{r.metric}\n{r.treatment} vs {r.control}" for r in results])
    ax.invert_yaxis()
    level = f"{100 * (1 - results[0].alpha):g}%"
    ax.set_xlabel(f"relative lift (%), {level} CI" if relative else f"difference in means, {level} CI")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_cumulative_lift(cumulative: pd.DataFrame, metric: str, relative: bool = True) -> Figure:
    """Lift of ``metric`` on the data through each day, one line and interval band per treatment.

    ``cumulative``: the frame from ``event_metrics.cumulative_lift`` (columns day, metric, treatment,
    diff, diff_lo, diff_hi, rel_lift, rel_lo, rel_hi).
    """
    rows = cumulative[cumulative["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no cumulative rows for metric '{metric}'; have {sorted(set(cumulative['metric']))}")
    est, lo, hi = ("rel_lift", "rel_lo", "rel_hi") if relative else ("diff", "diff_lo", "diff_hi")
    scale = 100.0 if relative else 1.0
    fig = _new_figure(7.0, 3.5)
    ax = fig.add_subplot()
    for treatment, part in rows.groupby("treatment", sort=True):
        part = part.sort_values("day")
        line = ax.plot(part["day"], part[est] * scale, marker="o", ms=3, label=str(treatment))[0]
        ax.fill_between(part["day"], part[lo] * scale, part[hi] * scale, color=line.get_color(), alpha=0.2)
    ax.axhline(0.0, color="black", ls="--", lw=1)
    ax.set_xlabel("days since start (cumulative data)")
    ax.set_ylabel("relative lift (%)" if relative else "difference in means")
    ax.set_title(f"cumulative lift: {metric}")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return fig


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def save_report_plots(report: Report, out_dir: Path | str) -> list[Path]:
    """Write ``lift.png`` and, when the report has daily data, ``cumulative_<metric>.png``.

    Creates ``out_dir`` if needed; returns the paths written, in that order.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"plot folder {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig = plot_lift(report.results)
    path = out / "lift.png"
    fig.savefig(path, dpi=100)
    written.append(path)
    if report.cumulative is not None and not report.cumulative.empty:
        for metric in dict.fromkeys(report.cumulative["metric"]):
            path = out / f"cumulative_{_slug(str(metric))}.png"
            plot_cumulative_lift(report.cumulative, str(metric)).savefig(path, dpi=100)
            written.append(path)
    return written
