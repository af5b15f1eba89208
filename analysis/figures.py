"""Ratio-vs-metric figures: test metric against the achieved trainable ratio (Figure 4 layout)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import (
    Figure,  # no pyplot: Figure.savefig renders with Agg, no global backend state
)
from matplotlib.ticker import FuncFormatter

from analysis.render import fmt_percent
from analysis.tables import AVERAGE, METRICS, main_methods, resolve_datasets, summarize
from analysis.tuning import select_lr

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def ratio_points(long: pd.DataFrame, dataset: str = AVERAGE) -> pd.DataFrame:
    """Rows of ``summarize`` for one column that have results, with x = mean achieved ratio."""
    points = long[(long["dataset"] == dataset) & long["n_ok"].gt(0)]
    return points.assign(x=points["trainable_pct"] / 100)


def _series_columns(frame: pd.DataFrame) -> list[str]:
    """A line of the figure is a method (per backbone when several are present)."""
    return [c for c in ("backbone", "method") if c in frame.columns]


def series_name(key: tuple) -> str:
    return "/".join(map(str, key))


def styles(long: pd.DataFrame) -> dict[str, dict]:
    """A fixed colour and marker per line, so that every panel uses the same ones."""
    names = [series_name(k) for k, _ in long.groupby(_series_columns(long), sort=False)]
    colors = sns.color_palette("colorblind", max(len(names), 1))
    return {n: {"color": colors[i % len(colors)], "marker": MARKERS[i % len(MARKERS)]} for i, n in enumerate(names)}


def is_endpoint(points: pd.DataFrame) -> pd.Series:
    """Rows at an end of the ratio axis (0: only the head, 1: every weight), drawn as horizontal lines."""
    return points["x"].le(0) | points["x"].ge(1)


def plot_ratio_curves(ax: Axes, points: pd.DataFrame, style: dict[str, dict]) -> None:
    """One line + markers (error bars = 95% confidence interval over seeds) per method; methods at an
    end of the ratio axis as horizontal lines with their interval as a band; hollow markers = averages
    over fewer datasets."""
    for key, g in points.groupby(_series_columns(points), sort=False):
        name = series_name(key)
        color, marker = style[name]["color"], style[name]["marker"]
        for r in g[is_endpoint(g)].itertuples():
            ax.axhline(r.mean, ls="--", lw=1.2, color=color, label=f"{r.label} ({fmt_percent(r.x)})")
            if not pd.isna(r.ci_low):
                ax.axhspan(r.ci_low, r.ci_high, color=color, alpha=0.1, lw=0)
        g = g[~is_endpoint(g)].sort_values("x")
        if g.empty:
            continue
        yerr = [(g["mean"] - g["ci_low"]).fillna(0), (g["ci_high"] - g["mean"]).fillna(0)]
        ax.errorbar(g["x"], g["mean"], yerr=yerr, color=color, marker=marker, ms=5, capsize=3,
                    ls="-" if len(g) > 1 else "none", label=name)
        hollow = g[g["state"].eq("incomplete")]
        ax.scatter(hollow["x"], hollow["mean"], s=25, marker=marker, facecolors="white", edgecolors=[color], zorder=3)
    if (~is_endpoint(points)).any():
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_percent(v)))
    ax.set_xlabel("trainable backbone weights (achieved ratio)")


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    return paths


def write_figures(df: pd.DataFrame, outdir: str | Path, *, metric: str = "macro_f1",
                  datasets: Sequence[str] | None = None, order: Sequence[str] = (),
                  study: Mapping[str, Any] | None = None) -> list[Path]:
    """Write ratio_vs_<metric> (average over datasets) and ratio_vs_<metric>_per_dataset as PNG + PDF
    (each cell at its learning rate chosen on validation by the ``study``'s sweep rule, see analysis.tuning)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    datasets = resolve_datasets(df, datasets)
    long = summarize(main_methods(select_lr(df, (study or {}).get("lr_sweep"))[0]), metric, datasets, order)
    name, style = METRICS.get(metric, metric), styles(long)
    written = []
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(6.5, 4))
        ax = fig.subplots()
        plot_ratio_curves(ax, ratio_points(long), style)
        ax.set_ylabel(f"average test {name} (%)")
        ax.set_title(f"Average over {len(datasets)} datasets (mean and 95% CI over seeds; hollow: fewer datasets)",
                     fontsize="small")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
        written += save_figure(fig, outdir / f"ratio_vs_{metric}")

        ncols = min(3, max(len(datasets), 1))
        fig = Figure(figsize=(4 * ncols, 3.2 * math.ceil(max(len(datasets), 1) / ncols)))
        axes = fig.subplots(math.ceil(max(len(datasets), 1) / ncols), ncols, squeeze=False).ravel()
        for ax, dataset in zip(axes, datasets):
            plot_ratio_curves(ax, ratio_points(long, dataset), style)
            ax.set_title(dataset)
            ax.set_ylabel(f"test {name} (%)")
        for ax in axes[len(datasets):]:
            ax.set_visible(False)
        legend = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
        if legend:
            fig.legend(list(legend.values()), list(legend.keys()), loc="center left", bbox_to_anchor=(1.0, 0.5),
                       fontsize="small")
        fig.tight_layout()
        written += save_figure(fig, outdir / f"ratio_vs_{metric}_per_dataset")
    return written
