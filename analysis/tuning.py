"""Fair tuning: per (dataset, backbone, method, ratio) cell, keep the runs of the learning rate with the
best mean validation macro-F1 (test metrics are never looked at), and say what was chosen."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.results import DEFAULT_LR
from benchmark.selection import best_lr, run_score

CELL = ["dataset", "backbone", "method", "ratio_tag"]
SELECTION_METRIC = "val.macro_f1"
CHOICE_COLUMNS = [*CELL, "lr", "val_macro_f1_mean", "n_seeds", "selection_seeds", "candidate_lrs",
                  "candidate_val_macro_f1"]


def _lr_order(tags: pd.Series) -> list[str]:
    """Distinct lr tags, numeric ascending; the method's default (non-numeric) first."""
    return sorted(set(tags), key=lambda t: (t != DEFAULT_LR, 0.0 if t == DEFAULT_LR else float(t)))


def choose_lr(runs: pd.DataFrame) -> tuple[str | None, dict]:
    """The lr tag of one cell's runs with the best mean validation macro-F1, and the choice's record.

    The DAG's own rule (``benchmark.selection``): a failed run scores 0, ties go to the smaller lr. Candidates are compared on the seeds every candidate ran (the sweep seeds, when
    the chosen lr also ran the other seeds), or on all their seeds if they share none. None when no run
    trained (every one unreachable or unreadable)."""
    candidates = _lr_order(runs["lr_tag"])
    trained = runs[runs["status"].isin(["ok", "failed"])]
    scores = pd.Series([run_score(s, v) for s, v in zip(trained["status"], trained[SELECTION_METRIC])],
                       index=trained.index, dtype=float)
    seeds = {lr: set(g["seed"]) for lr, g in trained.groupby("lr_tag")}
    common = set.intersection(*seeds.values()) if seeds else set()
    compared = trained["seed"].isin(common) if common else trained["seed"].notna()
    means = scores[compared].groupby(trained.loc[compared, "lr_tag"]).mean()
    best = best_lr(means.to_dict(), order=candidates.index) if len(means) else None
    chosen = runs[(runs["lr_tag"] == best) & runs["status"].eq("ok")]
    return best, {
        "lr": best, "val_macro_f1_mean": chosen[SELECTION_METRIC].mean() * 100, "n_seeds": len(chosen),
        "selection_seeds": " ".join(map(str, sorted(common))) if common else "all",
        "candidate_lrs": " ".join(candidates),
        "candidate_val_macro_f1": " ".join(f"{means.get(lr, np.nan) * 100:.2f}" for lr in candidates),
    }


def select_lr(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs of every cell's chosen lr, one row per cell describing the choice: ``CHOICE_COLUMNS``).

    A cell with a single lr keeps all its runs; a cell where no run trained keeps all its runs too,
    so that its state (unreachable, corrupt) stays visible in the tables."""
    keep, choices = [], []
    for key, runs in df.groupby(CELL, sort=False, dropna=False):
        best, choice = choose_lr(runs)
        keep.append(runs if best is None or runs["lr_tag"].nunique() == 1 else runs[runs["lr_tag"] == best])
        choices.append({**dict(zip(CELL, key)), **choice})
    selected = pd.concat(keep).sort_index() if keep else df
    return selected, pd.DataFrame(choices, columns=CHOICE_COLUMNS)
