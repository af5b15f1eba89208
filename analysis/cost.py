"""What the cells cost, per method: Snakemake's per-job benchmark files (``<output>/benchmarks/**.tsv``: wall
seconds and peak resident memory of the whole job, interpreter start-up included) beside the runner's own
split of a cell's process time (``perf.phases`` of each result: start-up and imports, data and model setup,
the method's preparation, training, evaluation), and the cells whose time is suspect because they ran
beside other work (``slowed_cells``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.render import Cell, Table
from analysis.tuning import CELL  # the cells of one group do the same work (epochs, images)
from benchmark.paths import parse_run_relpath

PHASES = ("startup_s", "setup_s", "prepare_s", "train_s", "eval_s")
SLOWED_FACTOR = 2.0  # a cell over this multiple of its group's median wall time ran beside other work
SLOWED_MIN_GROUP = 3  # groups smaller than this have no trustworthy median
COLUMNS = ["method", "cells", "slowed", "job_s_mean", "job_s_total", "max_rss_mb_mean", "max_rss_mb_max",
           *(f"{p}_mean" for p in PHASES), "train_eval_share"]


def read_benchmarks(folder: str | Path) -> pd.DataFrame:
    """One row per benchmark file: its cell (``cell``: the result's path below ``runs/``) and Snakemake's
    measurements."""
    rows = []
    for path in sorted(Path(folder).rglob("*.tsv")):
        cell = path.relative_to(folder).with_suffix(".json")
        if parse_run_relpath(cell):
            measured = pd.read_csv(path, sep="\t").iloc[-1]  # the last repeat (the study runs each job once)
            rows.append({"cell": cell.as_posix(), "job_s": float(measured["s"]), "max_rss_mb": float(measured["max_rss"])})
    return pd.DataFrame(rows, columns=["cell", "job_s", "max_rss_mb"])


def slowed_cells(runs: pd.DataFrame, factor: float = SLOWED_FACTOR,
                 min_group: int = SLOWED_MIN_GROUP) -> pd.DataFrame:
    """The trained cells whose recorded ``perf.wall_s`` exceeds ``factor`` x the median of their group (same
    dataset, backbone, method and ratio; groups of at least ``min_group`` trained cells), with that median.
    Every cell of a group runs the same epochs on the same images, so such a cell ran beside other work: its
    metrics stand, its time does not. Re-running it alone (``snakemake --force <cell>``) re-times it."""
    trained = runs[runs["status"].eq("ok")]
    grouped = trained.groupby(CELL, dropna=False)["perf.wall_s"]
    trained = trained.assign(group_median_s=grouped.transform("median"), group_cells=grouped.transform("size"))
    over = trained["group_cells"].ge(min_group) & trained["perf.wall_s"].gt(factor * trained["group_median_s"])
    return trained.loc[over, ["path", *CELL, "perf.wall_s", "group_median_s"]].reset_index(drop=True)


def cost_table(runs: pd.DataFrame, benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Per method, over its trained (``ok``) cells: their number, how many ran slowed (``slowed_cells``), mean
    and total job seconds, mean and largest peak RSS (MB), the mean seconds of each phase of the runner, and
    the share of training and evaluation in the process time."""
    phases = [f"perf.phases.{p}" for p in PHASES]
    trained = runs[runs["status"].eq("ok")].reindex(columns=[*runs.columns, *(p for p in phases if p not in runs)])
    trained = trained.assign(cell=trained["path"].str.split("/runs/").str[-1])
    per_phase = trained.groupby("method")[phases].mean().rename(columns=lambda c: f"{c.rsplit('.', 1)[1]}_mean")
    jobs = benchmarks.merge(trained[["cell", "method"]], on="cell").groupby("method").agg(cells=("job_s", "size"), job_s_mean=("job_s", "mean"),
                                            job_s_total=("job_s", "sum"), max_rss_mb_mean=("max_rss_mb", "mean"),
                                            max_rss_mb_max=("max_rss_mb", "max"))
    table = jobs.join(per_phase, how="outer")
    table["slowed"] = slowed_cells(runs).groupby("method").size().reindex(table.index, fill_value=0)
    means = table[[f"{p}_mean" for p in PHASES]]
    table["train_eval_share"] = (means["train_s_mean"] + means["eval_s_mean"]) / means.sum(axis=1, min_count=1)
    return table.reset_index().reindex(columns=COLUMNS)


def cost_markdown_table(table: pd.DataFrame) -> Table:
    def number(value: float, fmt: str = ".1f") -> str:
        return "—" if pd.isna(value) else format(value, fmt)

    rows = [[Cell(r["method"]), Cell(number(r["cells"], ".0f")), Cell(number(r["slowed"], ".0f")),
             Cell(number(r["job_s_mean"])),
             Cell(number(r["max_rss_mb_max"], ".0f")), *(Cell(number(r[f"{p}_mean"])) for p in PHASES),
             Cell(number(100 * r["train_eval_share"], ".0f") + "%" if not pd.isna(r["train_eval_share"]) else "—")]
            for _, r in table.iterrows()]
    header = ["Method", "Cells", "Slowed", "Job s (mean)", "Peak RSS MB", "Start-up s", "Setup s", "Prepare s",
              "Train s", "Eval s", "Train + eval"]
    notes = ["Job s and peak RSS: Snakemake's benchmark of each cell's job; the phases: the runner's own clock "
             "(benchmark.run.Phases), means over the cells that recorded them",
             f"Slowed: cells whose wall time exceeds {SLOWED_FACTOR:g}x the median of their dataset, backbone, "
             f"method and ratio (groups of >= {SLOWED_MIN_GROUP} cells); they ran beside other work, so their "
             "times (not their metrics) are suspect (analysis.cost.slowed_cells)"]
    return Table(header, rows, "Cost per cell and method", notes)
