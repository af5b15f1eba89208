"""SH-PEFT (Liu et al., MICCAI 2024) and its ablations: tune the k weights with the highest
importance (task-specific, task-agnostic or hybrid; L1 or L2), as k-element deltas."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

import shpeft
from shpeft import HEAD
from shpeft.select import num_selected

from .registry import PeftMethod, register

PAPER_RATIO = 1e-4  # "only ~0.01% of the weights are trained"


class SparseImportanceTuning(PeftMethod):
    """Select k weights by an importance score, then train only their deltas (+ the head)."""

    knob = "k"

    def __init__(self, kind: str = "hybrid", estimator: str = "l1", scope: str = "global", lam: float = 1.0):
        self.kind, self.estimator, self.scope, self.lam = kind, estimator, scope, lam
        self.needs_data = shpeft.SCORE_KINDS[kind].reduction(estimator) is not None

    def hparams(self) -> dict[str, Any]:
        return {"kind": self.kind, "estimator": self.estimator, "scope": self.scope, "lam": self.lam}

    def default_knob(self, model: nn.Module, backbone: int) -> int:
        return num_selected(PAPER_RATIO, backbone)

    def solve(self, model: nn.Module, ratio: float, backbone: int) -> int:
        """k = round(ratio x backbone), kept within [1, eligible weights]: any k in that range is exact,
        and a ratio outside it is reported unreachable by ``prepare`` (never a crash)."""
        eligible = sum(p.numel() for p in shpeft.eligible_parameters(model).values())
        return min(max(1, round(ratio * backbone)), eligible)

    def count(self, model: nn.Module, knob: int) -> int:
        return knob

    def attach(self, model: nn.Module, knob: int, calib: Iterable | None) -> nn.Module:
        scores = shpeft.importance(model, calib, kind=self.kind, estimator=self.estimator, lam=self.lam)
        backbone = shpeft.num_backbone_parameters(model, HEAD)
        mask = shpeft.select(scores, k=knob, total=backbone, scope=self.scope)
        return shpeft.apply(model, mask, train_extra=HEAD)


# The paper's method (hybrid, L1) and the ablations of its analysis.
register("shpeft", SparseImportanceTuning("hybrid", "l1"))
register("shpeft-l2", SparseImportanceTuning("hybrid", "l2"))
register("shpeft-ts", SparseImportanceTuning("task_specific", "l1"))
register("shpeft-ts-l2", SparseImportanceTuning("task_specific", "l2"))
register("shpeft-ta", SparseImportanceTuning("task_agnostic", "l1"))
register("shpeft-ta-l2", SparseImportanceTuning("task_agnostic", "l2"))
register("shpeft-taylor", SparseImportanceTuning("taylor", "l1"))
register("shpeft-layerwise", SparseImportanceTuning("hybrid", "l1", scope="per_layer"))
