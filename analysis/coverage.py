"""Whether a study is complete: for every (method, ratio, dataset) its config declares, the state of each
seed's reported run (the run at the lr validation chose, analysis.tuning.select_lr): ok, unreachable (the
method cannot reach that ratio), failed, corrupt, or missing (no run of that seed yet)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis.render import Cell, Table, fmt_ratio
from benchmark.paths import ratio_tag
from benchmark.study import ratios

COVERAGE = "coverage"  # the file stem of the coverage table
STATES = ("ok", "unreachable", "failed", "corrupt", "missing")  # a seed with runs in several states takes the first


def seed_state(statuses: set[str]) -> str:
    """The state of one seed from the statuses of its reported runs (several when no lr trained)."""
    return next((s for s in STATES if s in statuses), "missing")


def coverage_table(reported: pd.DataFrame, study: Mapping[str, Any]) -> pd.DataFrame:
    """One row per declared (method, ratio_tag, dataset): how many of the study's seeds are in each state."""
    rows = []
    for method in study["methods"]:
        for tag in dict.fromkeys(map(ratio_tag, ratios(study, method))):
            for dataset in study["datasets"]:
                cell = reported[reported["method"].eq(method) & reported["ratio_tag"].eq(tag)
                                & reported["dataset"].eq(dataset)]
                statuses = cell.groupby("seed")["status"].agg(set)
                states = [seed_state(statuses.get(seed, set())) for seed in study["seeds"]]
                rows.append({"method": method, "ratio_tag": tag, "dataset": dataset,
                             **{s: states.count(s) for s in STATES}})
    return pd.DataFrame(rows, columns=["method", "ratio_tag", "dataset", *STATES])


def _state_text(counts: pd.Series) -> str:
    return ", ".join(f"{int(counts[s])} {s}" for s in STATES if counts[s]) or "no seeds"


def coverage_markdown_table(table: pd.DataFrame) -> Table:
    """Methods x ratios by datasets, each cell naming its seeds' states; the totals in the notes."""
    datasets = list(dict.fromkeys(table["dataset"]))
    rows = [[Cell(method), Cell(fmt_ratio(tag)),
             *(Cell(_state_text(r)) for _, r in group.set_index("dataset").loc[datasets].iterrows())]
            for (method, tag), group in table.groupby(["method", "ratio_tag"], sort=False)]
    totals = table[list(STATES)].sum()
    notes = [f"{int(totals.sum())} declared cells (method x ratio x dataset x seed): "
             + ", ".join(f"{int(totals[s])} {s}" for s in STATES),
             "each seed's state is that of its reported run (at the lr validation chose); missing: no run of "
             "that seed yet"]
    return Table(["Method", "Ratio", *datasets], rows, "Study coverage: every cell the study config declares",
                 notes, n_index=2)
