"""Fair tuning: per (dataset, backbone, method, ratio) cell, keep the runs of the learning rate with the
best mean validation macro-F1 (test metrics are never looked at), and say what was chosen."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.results import DEFAULT_LR

CELL = ["dataset", "backbone", "method", "ratio_tag"]
SELECTION_METRIC = "val.macro_f1"
CHOICE_COLUMNS = [*CELL, "lr", "val_macro_f1_mean", "n_seeds", "selection_seeds", "candidate_lrs",
                  "candidate_val_macro_f1"]


def _lr_order(tags: pd.Series) -> list[str]:
    """Distinct lr tags, numeric ascending; the method's default (non-numeric) first."""
    return sorted(set(tags), key=lambda t: (t != DEFAULT_LR, 0.0 if t == DEFAULT_LR else float(t)))


def choose_lr(runs: pd.DataFrame) -> tuple[str | None, dict]:
    """The lr tag of one cell's runs with the best mean validation macro-F1, and the choice's record.

    Candidates are compared on the seeds every candidate finished (a one-seed sweep next to a
    three-seed final run compares seed 0 with seed 0), or on all their seeds if they share none.
    Ties go to the lr with more finished seeds, then to the smaller lr. None if no run finished."""
    candidates = _lr_order(runs["lr_tag"])
    ok = runs[runs["status"].eq("ok") & runs[SELECTION_METRIC].notna()]
    seeds = {lr: set(g["seed"]) for lr, g in ok.groupby("lr_tag")}
    common = set.intersection(*seeds.values()) if seeds else set()
    compared = ok[ok["seed"].isin(common)] if common else ok
    means = compared.groupby("lr_tag")[SELECTION_METRIC].mean()
    ranked = sorted(means.index, key=lambda lr: (-means[lr], -len(seeds[lr]), candidates.index(lr)))
    best = ranked[0] if ranked else None
    chosen = ok[ok["lr_tag"] == best]
    return best, {
        "lr": best, "val_macro_f1_mean": chosen[SELECTION_METRIC].mean() * 100, "n_seeds": len(chosen),
        "selection_seeds": " ".join(map(str, sorted(common))) if common else "all",
        "candidate_lrs": " ".join(candidates),
        "candidate_val_macro_f1": " ".join(f"{means.get(lr, np.nan) * 100:.2f}" for lr in candidates),
    }


def select_lr(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs of every cell's chosen lr, one row per cell describing the choice: ``CHOICE_COLUMNS``).

    A cell with a single lr keeps all its runs; a cell where no lr finished keeps all its runs too,
    so that its failures stay visible in the tables."""
    keep, choices = [], []
    for key, runs in df.groupby(CELL, sort=False, dropna=False):
        best, choice = choose_lr(runs)
        keep.append(runs if best is None or runs["lr_tag"].nunique() == 1 else runs[runs["lr_tag"] == best])
        choices.append({**dict(zip(CELL, key)), **choice})
    selected = pd.concat(keep).sort_index() if keep else df
    return selected, pd.DataFrame(choices, columns=CHOICE_COLUMNS)
