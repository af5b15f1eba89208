"""The learning-rate choice of a sweep, defined once: the DAG's sweep rounds (benchmark.study) and the
tables (analysis.tuning) both call :func:`choose`. torch-free, so the analysis can import it.

The rule, declared before any run and the same for every method: each candidate lr scores the mean
validation macro-F1 of its runs on the sweep seeds (a failed run scores 0); the best mean wins, ties
to the smaller lr. When the winner sits at an edge of the candidates, the sweep is extended one step
(x ``step``) past it, at most ``max_extensions`` times per side; a winner still at the edge after that
is recorded as having hit the limit; a winner tied with another candidate is not extended (a plateau,
no evidence that the optimum lies beyond). Test metrics are never read.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

SELECTION_METRIC = "macro_f1"  # on the validation split
FAILED_SCORE = 0.0  # a run that failed (NaN loss) scores this in the mean
DEFAULT_STEP = 3.0  # an extension multiplies (divides) the edge lr by this
DEFAULT_MAX_EXTENSIONS = 2  # per side

Lr = TypeVar("Lr", float, str)


def lr_value(lr: float) -> float:
    """A learning rate as the benchmark writes it (``%g``: 0.001, 3e-05), so an extension of a grid
    lands on the same float as a path or a config that names it."""
    return float(f"{float(lr):g}")


def run_score(status: str | None, val_score: float | None) -> float:
    """What one run contributes to its lr's mean: its validation score, or FAILED_SCORE if it failed."""
    return float(val_score) if status == "ok" and val_score is not None else FAILED_SCORE


def best_lr(means: Mapping[Lr, float], order: Callable[[Lr], Any] = float) -> Lr:
    """The lr (a float or its %g tag) with the highest mean validation score; ties go to the smaller lr
    (smaller by ``order``)."""
    return min(means, key=lambda lr: (-means[lr], order(lr)))


@dataclass(frozen=True)
class SweepRule:
    """How far a sweep may extend past its grid."""

    step: float = DEFAULT_STEP
    max_extensions: int = DEFAULT_MAX_EXTENSIONS

    @classmethod
    def from_config(cls, sweep: Mapping[str, Any] | None) -> SweepRule:
        """The rule of a study's ``lr_sweep`` block (``extend: {step, max}``; defaults otherwise)."""
        extend = (sweep or {}).get("extend") or {}
        return cls(step=float(extend.get("step", DEFAULT_STEP)), max_extensions=int(extend.get("max", DEFAULT_MAX_EXTENSIONS)))


def base_grid(sweep: Mapping[str, Any] | None, method: str, recipe_lr: float, lr_scale: float = 1.0) -> list[float]:
    """The learning rates a study's ``lr_sweep`` block starts ``method`` at (empty: not swept): explicit
    ``lrs`` win, else ``multipliers`` x the method's recipe lr x ``lr_scale``. Sorted, %g-rounded."""
    sweep = sweep or {}
    if method in sweep.get("lrs", {}):
        lrs = sweep["lrs"][method]
    elif sweep.get("multipliers") and method not in sweep.get("exclude", []):
        lrs = [m * recipe_lr * lr_scale for m in sweep["multipliers"]]
    else:
        lrs = []
    return sorted({lr_value(lr) for lr in lrs})


@dataclass(frozen=True)
class Choice:
    """The outcome of one selection: the chosen ``lr`` (None when no run trained), every candidate's
    mean, and where the sweep stands against its grid."""

    lr: float | None
    means: dict[float, float]
    grid: tuple[float, ...]
    seeds: tuple[int, ...] = ()  # the seeds the means are over
    next_lr: float | None = None  # the extension to run next; None: the choice is settled
    extensions: dict[str, int] = field(default_factory=lambda: {"low": 0, "high": 0})
    limit_hit: bool = False  # the winner is at an edge and no extension is left on that side

    @property
    def candidates(self) -> list[float]:
        return sorted({*self.grid, *self.means})

    @property
    def edge(self) -> str | None:
        """``low``/``high`` when the winner is the smallest/largest candidate (of two or more)."""
        lrs = self.candidates
        if self.lr is None or len(lrs) < 2:
            return None
        return "low" if self.lr == lrs[0] else "high" if self.lr == lrs[-1] else None

    def record(self) -> dict[str, Any]:
        """JSON-able: the DAG's round files and the tables' ``selected_hparams.csv`` columns."""
        return {"lr": self.lr, "next_lr": self.next_lr, "edge": self.edge, "limit_hit": self.limit_hit,
                "extensions_low": self.extensions["low"], "extensions_high": self.extensions["high"],
                "grid": list(self.grid), "candidates": self.candidates, "seeds": list(self.seeds),
                "means": {f"{lr:g}": m for lr, m in sorted(self.means.items())}}


def choose(scores: Mapping[float, Sequence[float]], grid: Sequence[float] = (), rule: SweepRule = SweepRule(),
           seeds: Sequence[int] = ()) -> Choice:
    """The choice among candidate lrs, each with the per-run scores of :func:`run_score` (an lr with no
    scores did not train: every run unreachable). ``grid`` is the sweep's starting grid: candidates
    beyond it are extensions (an empty grid: the candidates are the grid)."""
    means = {lr_value(lr): sum(v) / len(v) for lr, v in scores.items() if len(v)}
    grid = tuple(sorted({lr_value(lr) for lr in grid} or means))
    if not means:
        return Choice(None, {}, grid, tuple(seeds))
    best = best_lr(means)
    extensions = {"low": sum(lr < grid[0] for lr in means), "high": sum(lr > grid[-1] for lr in means)}
    choice = Choice(best, means, grid, tuple(seeds), extensions=extensions)
    side = choice.edge
    if side is None or sum(m == means[best] for m in means.values()) > 1:
        return choice  # inside the candidates, or tied with another: no evidence the optimum lies beyond
    if extensions[side] >= rule.max_extensions:
        return dataclasses.replace(choice, limit_hit=True)
    beyond = best * rule.step if side == "high" else best / rule.step
    return dataclasses.replace(choice, next_lr=float(f"{beyond:.2g}"))  # 1e-3 / 3 -> 0.00033, a short path

