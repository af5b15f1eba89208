"""Draw the sparsity and hybridity figures from the CSVs of ``python -m benchmark.sparsity``
(concentration.csv, keep_top.csv, overlap.csv; their columns are described there).

``python -m analysis sparsity --in results/sparsity --out results/sparsity``
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.figures import save_figure
from analysis.render import fmt_percent


def _percent_axis(ax, x: bool = True) -> None:
    formatter = FuncFormatter(lambda v, _: fmt_percent(v))
    (ax.xaxis if x else ax.yaxis).set_major_formatter(formatter)


def plot_concentration(conc: pd.DataFrame, stem: Path) -> list[Path]:
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    sns.lineplot(conc, x="fraction", y="share", hue="dataset", marker="o", ms=4, ax=ax)
    grid = np.array(sorted(conc["fraction"].unique()))
    ax.plot(grid, grid, ls="--", color="grey", lw=1, label="uniform |Δw| (share = p)")
    ax.set_xscale("log")
    _percent_axis(ax)
    _percent_axis(ax, x=False)
    ax.set_xlabel("top p of the eligible weights, ranked by |Δw|")
    ax.set_ylabel("share of total |Δw|")
    ax.set_title("Sparsity: concentration of the fine-tuning change", fontsize="small")
    ax.legend(fontsize="small")
    return save_figure(fig, stem)


def plot_keep_top(keep: pd.DataFrame, stem: Path) -> list[Path]:
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    colors = dict(zip(keep["dataset"].unique(), sns.color_palette("colorblind", keep["dataset"].nunique())))
    for ax, metric, name in zip(axes, ("macro_f1", "accuracy"), ("macro-F1", "accuracy")):
        for dataset, g in keep.groupby("dataset", sort=False):  # means over the dataset's models (seeds)
            top = g[g["setting"] == "top-p"].groupby("keep_fraction")[metric].mean()
            ax.plot(top.index, top.to_numpy() * 100, marker="o", color=colors[dataset], label=dataset)
            for setting, ls in (("fine-tuned", "--"), ("reverted", ":")):
                ax.axhline(g.loc[g["setting"] == setting, metric].mean() * 100, ls=ls, lw=1.2,
                           color=colors[dataset])
        ax.set_xscale("log")
        _percent_axis(ax)
        ax.set_xlabel("kept top p of |Δw| (other eligible weights: pretrained)")
        ax.set_ylabel(f"test {name} (%)")
    fig.suptitle("Sparsity: keeping only the top-p changes (each dataset: mean over its fine-tuned models). "
                 "Dashed: full fine-tuning (p = 1); dotted: all eligible changes reverted (p = 0).\n"
                 f"Non-eligible parameters: {keep['non_eligible'].iloc[0]}.",
                 fontsize="small")
    axes[1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_overlap(table: pd.DataFrame, stem: Path) -> list[Path]:
    order = list(dict.fromkeys(table["set_a"]))
    matrix = table.pivot(index="set_a", columns="set_b", values="overlap").loc[order, order] * 100
    fig = Figure(figsize=(1.1 * len(order) + 3, 0.9 * len(order) + 2))
    ax = fig.subplots()
    sns.heatmap(matrix, annot=True, fmt=".1f", cmap="viridis", vmin=0, vmax=100, square=True, ax=ax,
                cbar_kws={"label": "overlap |A∩B| / k (%)"})
    r = table.iloc[0]
    ax.set_title(f"Hybridity: overlap of the top-k |Δw| sets (k = {r.k} = {fmt_percent(r.ratio)} of "
                 f"{r.n_eligible}; random sets: {r.random_expected * 100:.2g}%)\neach dataset's lowest-seed fine-tuned "
                 "model", fontsize="small")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return save_figure(fig, stem)


PLOTS: dict[str, Callable[[pd.DataFrame, Path], list[Path]]] = {
    "concentration": plot_concentration, "keep_top": plot_keep_top, "overlap": plot_overlap,
}


def write_sparsity_figures(indir: str | Path, outdir: str | Path | None = None) -> list[Path]:
    """One PNG + PDF per CSV of ``indir`` (into ``outdir``, default ``indir``); a missing CSV is an error."""
    indir = Path(indir)
    outdir = Path(outdir or indir)
    missing = [f"{name}.csv" for name in PLOTS if not (indir / f"{name}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"{indir}: no {', '.join(missing)} (written by python -m benchmark.sparsity)")
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        for name, plot in PLOTS.items():
            written += plot(pd.read_csv(indir / f"{name}.csv"), outdir / name)
    return written
