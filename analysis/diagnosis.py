"""Why a method scores below the linear probe, read from its loss history.

A PEFT method that trains a superset of the probe's parameters should not lose to it; when it does on
real data, that is a finding to explain (learning rate, epochs, initialisation), not to hide. The probe
is recognised from the data (its runs train no backbone weight: achieved ratio 0), so no method name is
restated here. The verdict is a pure function of one run's per-epoch history (``metrics.history``)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.render import Cell, Table
from analysis.tuning import CELL
from benchmark.result import Result, ResultError

RISE = 0.05  # a train loss this much (relative) above the previous epoch's is a rise
STILL_FALLING = 0.03  # the last epoch lowered the train loss by more than this (relative): not converged
FLAT = 0.01  # val macro-F1 within this of its first-epoch value: it never moved
MAX_EPOCHS_SHOWN = 12


HISTORY_KEYS = ("epoch", "train_loss", "val_macro_f1")


def read_history(path: str | Path) -> list[dict]:
    """The complete per-epoch records (epoch, train_loss, val_macro_f1) of one result file ([] when absent)."""
    try:
        history = Result.read(path).history
    except ResultError:
        return []
    return [h for h in history if all(k in h for k in HISTORY_KEYS)]


def verdict(history: Sequence[dict]) -> str:
    """One sentence on what the history shows: a stuck classifier, an unstable start, under-training
    or over-fitting (the first that applies, in that order)."""
    if len(history) < 2:
        return "too few epochs recorded to tell"
    loss = np.array([h["train_loss"] for h in history], dtype=float)
    f1 = np.array([h["val_macro_f1"] for h in history], dtype=float)
    best = int(np.argmax(f1))
    if np.all(np.abs(f1 - f1[0]) <= FLAT):
        return (f"stuck: val macro-F1 never left {f1[0]:.3f} (one class predicted) while the train loss went "
                f"{loss[0]:.3f} -> {loss[-1]:.3f}: the classes were never separated in these epochs")
    rises = [i for i in range(1, len(loss)) if loss[i] > loss[i - 1] * (1 + RISE)]
    if rises and rises[0] <= len(loss) // 2 and best == len(f1) - 1:
        e = rises[0]
        return (f"unstable start, then under-trained: the train loss rose at epoch {history[e]['epoch']} "
                f"({loss[e - 1]:.3f} -> {loss[e]:.3f}: too high a step early on) and was still falling at the "
                f"end; its best epoch is the last")
    if loss[-1] < loss[-2] * (1 - STILL_FALLING) and best >= len(f1) - 2:
        return (f"under-trained: the train loss was still falling at the last epoch ({loss[-2]:.3f} -> "
                f"{loss[-1]:.3f}) and val macro-F1 peaked at epoch {history[best]['epoch']}; more epochs would help")
    if best < len(f1) - 2 and f1[-1] < f1[best] - FLAT and loss[-1] < loss[best] * (1 - STILL_FALLING):
        return (f"over-fits: val macro-F1 peaked at epoch {history[best]['epoch']} ({f1[best]:.3f}) while the "
                f"train loss kept falling ({loss[best]:.3f} -> {loss[-1]:.3f})")
    return f"converged below the probe: train loss {loss[0]:.3f} -> {loss[-1]:.3f}, best val macro-F1 {f1[best]:.3f}"


def _curve(history: Sequence[dict], key: str) -> str:
    return " ".join(f"{h[key]:.2f}" for h in history[:MAX_EPOCHS_SHOWN])


def below_probe(selected: pd.DataFrame, metric: str = "test.macro_f1") -> pd.DataFrame:
    """Cells (dataset, backbone, method, ratio) of the reported runs whose mean ``metric`` is below the
    linear probe's on the same dataset and backbone, with each cell's seed-0 (lowest seed) history and
    verdict. Empty when there is no probe."""
    ok = selected[selected["status"].eq("ok")]
    probe = ok[ok["budget.achieved_ratio"].eq(0)]
    if probe.empty:
        return pd.DataFrame()
    probe_mean = probe.groupby(["dataset", "backbone"])[metric].mean()
    probe_methods = set(probe["method"])
    rows = []
    for key, runs in ok[~ok["method"].isin(probe_methods)].groupby(CELL, sort=True):
        cell = dict(zip(CELL, key))
        reference = probe_mean.get((cell["dataset"], cell["backbone"]))
        mean = runs[metric].mean()
        if reference is None or not mean < reference:
            continue
        run = runs.sort_values("seed").iloc[0]
        history = read_history(run["path"])
        rows.append({**cell, "lr": run["lr_tag"], "mean": mean, "probe_mean": reference, "n_seeds": len(runs),
                     "seed": run["seed"], "train_loss": _curve(history, "train_loss"),
                     "val_macro_f1": _curve(history, "val_macro_f1"), "verdict": verdict(history)})
    return pd.DataFrame(rows)


CHANCE_MARGIN = 0.05  # a run whose test balanced accuracy is within this of chance (1 / classes) learned ~nothing


def near_chance(runs: pd.DataFrame, margin: float = CHANCE_MARGIN, reported: pd.Index | None = None) -> pd.DataFrame:
    """Every finished run (sweep cells included) whose test balanced accuracy is within ``margin`` of chance,
    with its loss history and verdict; ``reported``: the index of the runs the tables report (each cell at
    its chosen lr), so a sweep cell that validation rejected is told apart from a reported one."""
    ok = runs[runs["status"].eq("ok")]
    if ok.empty or "test.balanced_accuracy" not in ok.columns or "test.per_class_f1" not in ok.columns:
        return pd.DataFrame()
    chance = 1 / ok["test.per_class_f1"].map(len)
    close = ok[ok["test.balanced_accuracy"] - chance < margin]
    rows = []
    for _, run in close.sort_values(CELL + ["seed"]).iterrows():
        history = read_history(run["path"])
        rows.append({**{k: run[k] for k in CELL}, "lr": run["lr_tag"], "seed": run["seed"],
                     "balanced_accuracy": run["test.balanced_accuracy"], "chance": 1 / len(run["test.per_class_f1"]),
                     "reported": reported is None or run.name in reported,
                     "train_loss": _curve(history, "train_loss"), "val_macro_f1": _curve(history, "val_macro_f1"),
                     "verdict": verdict(history)})
    return pd.DataFrame(rows)


def near_chance_table(rows: pd.DataFrame) -> Table:
    body = [[Cell(r["dataset"]), Cell(r["method"]), Cell(r["ratio_tag"]), Cell(str(r["lr"])), Cell(str(r["seed"])),
             Cell("reported" if r["reported"] else "rejected on validation"),
             Cell(f"{r['balanced_accuracy']:.3f}"), Cell(f"{r['chance']:.3f}"), Cell(r["train_loss"]),
             Cell(r["val_macro_f1"]), Cell(r["verdict"])] for _, r in rows.iterrows()]
    header = ["dataset", "method", "ratio", "lr", "seed", "lr choice", "test balanced accuracy", "chance",
              "train loss per epoch", "val macro-F1 per epoch", "verdict"]
    return Table(header, body, f"Runs within {CHANCE_MARGIN} of chance (test balanced accuracy), and why", n_index=5)


def below_probe_table(rows: pd.DataFrame) -> Table:
    """The cells below the probe, percent means side by side, with their curves and verdicts."""
    body = [[Cell(r["dataset"]), Cell(r["method"]), Cell(r["ratio_tag"]), Cell(str(r["lr"])),
             Cell(f"{r['mean'] * 100:.1f}"), Cell(f"{r['probe_mean'] * 100:.1f}"), Cell(r["train_loss"]),
             Cell(r["val_macro_f1"]), Cell(r["verdict"])] for _, r in rows.iterrows()]
    header = ["dataset", "method", "ratio", "lr", "test macro-F1", "linear probe", "train loss per epoch (lowest seed)",
              "val macro-F1 per epoch", "verdict"]
    return Table(header, body, "Methods below the linear probe (mean over seeds), and why", n_index=3)
