"""What the cells cost, per method: Snakemake's per-job benchmark files (``<output>/benchmarks/**.tsv``: wall
seconds and peak resident memory of the whole job, interpreter start-up included) beside the runner's own
split of a cell's process time (``perf.phases`` of each result: start-up and imports, data and model setup,
the method's preparation, training, evaluation)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.render import Cell, Table
from benchmark.paths import parse_run_relpath

PHASES = ("startup_s", "setup_s", "prepare_s", "train_s", "eval_s")
COLUMNS = ["method", "cells", "job_s_mean", "job_s_total", "max_rss_mb_mean", "max_rss_mb_max",
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


def cost_table(runs: pd.DataFrame, benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Per method, over its trained (``ok``) cells: their number, mean and total job seconds, mean and largest
    peak RSS (MB), the mean seconds of each phase of the runner, and the share of training and evaluation
    in the process time."""
    phases = [f"perf.phases.{p}" for p in PHASES]
    trained = runs[runs["status"].eq("ok")].reindex(columns=[*runs.columns, *(p for p in phases if p not in runs)])
    trained = trained.assign(cell=trained["path"].str.split("/runs/").str[-1])
    per_phase = trained.groupby("method")[phases].mean().rename(columns=lambda c: f"{c.rsplit('.', 1)[1]}_mean")
    jobs = benchmarks.merge(trained[["cell", "method"]], on="cell").groupby("method").agg(cells=("job_s", "size"), job_s_mean=("job_s", "mean"),
                                            job_s_total=("job_s", "sum"), max_rss_mb_mean=("max_rss_mb", "mean"),
                                            max_rss_mb_max=("max_rss_mb", "max"))
    table = jobs.join(per_phase, how="outer")
    means = table[[f"{p}_mean" for p in PHASES]]
    table["train_eval_share"] = (means["train_s_mean"] + means["eval_s_mean"]) / means.sum(axis=1, min_count=1)
    return table.reset_index().reindex(columns=COLUMNS)


def cost_markdown_table(table: pd.DataFrame) -> Table:
    def number(value: float, fmt: str = ".1f") -> str:
        return "—" if pd.isna(value) else format(value, fmt)

    rows = [[Cell(r["method"]), Cell(number(r["cells"], ".0f")), Cell(number(r["job_s_mean"])),
             Cell(number(r["max_rss_mb_max"], ".0f")), *(Cell(number(r[f"{p}_mean"])) for p in PHASES),
             Cell(number(100 * r["train_eval_share"], ".0f") + "%" if not pd.isna(r["train_eval_share"]) else "—")]
            for _, r in table.iterrows()]
    header = ["Method", "Cells", "Job s (mean)", "Peak RSS MB", "Start-up s", "Setup s", "Prepare s", "Train s",
              "Eval s", "Train + eval"]
    notes = ["Job s and peak RSS: Snakemake's benchmark of each cell's job; the phases: the runner's own clock "
             "(benchmark.run.Phases), means over the cells that recorded them"]
    return Table(header, rows, "Cost per cell and method", notes)
