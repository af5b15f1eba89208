"""Fair tuning: per (dataset, backbone, method, ratio) cell, keep the runs of the learning rate chosen on
validation by the DAG's own rule (benchmark.selection.choose: test metrics are never looked at), and say
what was chosen, from which candidates, how far the sweep was extended and whether it hit its limit."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.results import DEFAULT_LR
from benchmark.selection import SweepRule, base_grid, choose, run_score

CELL = ["dataset", "backbone", "method", "ratio_tag"]
SELECTION_COLUMN = "val.macro_f1"  # the column of benchmark.selection.SELECTION_METRIC on validation
CHOICE_COLUMNS = [*CELL, "lr", "val_macro_f1_mean", "n_seeds", "selection_seeds", "candidate_lrs",
                  "candidate_val_macro_f1", "grid", "extensions_low", "extensions_high", "edge", "limit_hit"]


def _lr_order(tags: pd.Series) -> list[str]:
    """Distinct lr tags, numeric ascending; the method's default (non-numeric) first."""
    return sorted(set(tags), key=lambda t: (t != DEFAULT_LR, 0.0 if t == DEFAULT_LR else float(t)))


def study_grid(runs: pd.DataFrame, sweep: Mapping[str, Any] | None) -> list[float]:
    """The grid a study's ``lr_sweep`` started this cell's method at (empty without a study: the
    candidates found are then the grid), from the recipe lr and lr_scale the runs recorded."""
    if not sweep or runs.empty or "recipe.lr" not in runs.columns:
        return []
    first = runs.iloc[0]
    scale = first.get("config.lr_scale", 1.0)
    return base_grid(sweep, first["method"], float(first["recipe.lr"]), 1.0 if pd.isna(scale) else float(scale))


def choose_lr(runs: pd.DataFrame, sweep: Mapping[str, Any] | None = None) -> tuple[str | None, dict]:
    """The lr tag of one cell's runs chosen on validation, and the choice's record.

    Candidates are compared on the seeds every candidate ran (the sweep seeds, when the chosen lr also ran
    the other seeds), or on all their seeds if they share none. None when no run trained (every one
    unreachable or unreadable), or when the cell ran one lr only (nothing to choose)."""
    candidates = _lr_order(runs["lr_tag"])
    trained = runs[runs["status"].isin(["ok", "failed"])]
    seeds = {lr: set(g["seed"]) for lr, g in trained.groupby("lr_tag")}
    common = set.intersection(*seeds.values()) if seeds else set()
    compared = trained[trained["seed"].isin(common)] if common else trained
    numeric = compared[compared["lr_tag"] != DEFAULT_LR]
    scores: dict[float, list[float]] = {}
    for status, value, lr in zip(numeric["status"], numeric[SELECTION_COLUMN], numeric["lr"]):
        scores.setdefault(float(lr), []).append(run_score(status, None if pd.isna(value) else value))
    rule = SweepRule.from_config(sweep)
    choice = choose(scores, study_grid(runs, sweep), rule, sorted(int(s) for s in common))
    record = choice.record()
    best = None if choice.lr is None else next(t for t in candidates if t != DEFAULT_LR and float(t) == choice.lr)
    if best is None and len(candidates) == 1 and not trained.empty:
        best = candidates[0]  # one lr (the method's default): nothing was chosen
    chosen = runs[(runs["lr_tag"] == best) & runs["status"].eq("ok")]
    means = {float(k): v for k, v in record["means"].items()}
    return best, {
        "lr": best, "val_macro_f1_mean": chosen[SELECTION_COLUMN].mean() * 100, "n_seeds": len(chosen),
        "selection_seeds": " ".join(map(str, sorted(common))) if common else "all",
        "candidate_lrs": " ".join(candidates),
        "candidate_val_macro_f1": " ".join(f"{means.get(float(lr), np.nan) * 100:.2f}" if lr != DEFAULT_LR else "nan"
                                           for lr in candidates),
        "grid": " ".join(f"{lr:g}" for lr in record["grid"]) if sweep else "",
        "extensions_low": record["extensions_low"], "extensions_high": record["extensions_high"],
        "edge": record["edge"] or "", "limit_hit": record["limit_hit"],
    }


def select_lr(df: pd.DataFrame, sweep: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs of every cell's chosen lr, one row per cell describing the choice: ``CHOICE_COLUMNS``).
    ``sweep``: the study's ``lr_sweep`` block (its grid and extension rule).

    A cell with a single lr keeps all its runs; a cell where no run trained keeps all its runs too,
    so that its state (unreachable, corrupt) stays visible in the tables."""
    keep, choices = [], []
    for key, runs in df.groupby(CELL, sort=False, dropna=False):
        best, choice = choose_lr(runs, sweep)
        keep.append(runs if best is None or runs["lr_tag"].nunique() == 1 else runs[runs["lr_tag"] == best])
        choices.append({**dict(zip(CELL, key)), **choice})
    selected = pd.concat(keep).sort_index() if keep else df
    return selected, pd.DataFrame(choices, columns=CHOICE_COLUMNS)
