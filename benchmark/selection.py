"""The learning-rate choice of a sweep, shared by the DAG (benchmark.study) and the tables
(analysis.tuning); torch-free, so the analysis can import it."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

SELECTION_METRIC = "macro_f1"  # on the validation split
FAILED_SCORE = 0.0  # a run that failed (NaN loss) scores this in the mean

Lr = TypeVar("Lr", float, str)


def run_score(status: str, val_score: float | None) -> float:
    """What one run contributes to its lr's mean: its validation score, or FAILED_SCORE if it failed."""
    return float(val_score) if status == "ok" and val_score is not None else FAILED_SCORE


def best_lr(means: Mapping[Lr, float], order: Callable[[Lr], Any] = float) -> Lr:
    """The lr (a float or its %g tag) with the highest mean validation score; ties go to the smaller lr
    (smaller by ``order``)."""
    return min(means, key=lambda lr: (-means[lr], order(lr)))
