"""SPT-LoRA: Sensitivity-aware visual Parameter-efficient fine-Tuning (He et al., ICCV 2023,
arXiv 2303.08566; reference code github.com/ziplab/SPT, ``engine.py:get_sensitivity``).

1. Sensitivity of every weight: the squared task-loss gradient summed over calibration batches
   (SPT: 16 batches of 32 images). We use shpeft's task-specific L2 score (the mean: same ranking).
2. Rank all weights globally and take the top tau. A weight matrix W (d_out x d_in) with at least
   sigma_opt = r (d_in + d_out) / alpha selected weights (r = 8, alpha = 10) is tuned with a rank-r
   LoRA, which costs r (d_in + d_out) of the budget instead of its selected weights; every other
   matrix tunes its selected weights (unstructured, shpeft sparse deltas).
3. SPT sweeps tau and keeps the plan whose total cost is closest to the budget. Here the budget
   is exact: the LoRA set is the one at the largest tau whose cost still fits k, and the rest of k
   goes to the most sensitive weights of the other matrices.
4. The class token is trained too, as in SPT's code, and counted in k.

Named deviations from ziplab/SPT (also in docs/method.md): the candidates are the projection
matrices only (SPT also ranks norm and bias vectors and tunes a whole vector once >= 20% of it
is selected); the fused ``attn.qkv`` is one candidate with one LoRA (one A shared by q, k, v),
where SPT's ViT has separate q, k and v matrices, each its own candidate.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Any

import torch
from torch import Tensor, nn

import shpeft
from shpeft import HEAD
from shpeft.select import num_selected

from .registry import Recipe, freeze_all_but_head, register
from .shpeft import SparseImportanceTuning

NATIVE_RATIO = 5e-3  # ~0.43M of ViT-B/16's 85.8M; SPT sweeps 0.2M-1.0M (configs/*_spt_lora.sh)
SENSITIVITY_IMAGES = 512  # SPT: --sensitivity_batch_num 16 x --batch-size 32
SPT_TOKENS = ("cls_token",)  # trained whole, as in SPT's code (kept out of weight decay, as every token)
LORA_DROPOUT = 0.1  # SPT's LoRA: no scaling (alpha = r), dropout 0.1 on its input


def token_count(model: nn.Module) -> int:
    """Parameters of the trained tokens ``model`` has (a timm ViT without a class token has none)."""
    return sum(p.numel() for n, p in model.named_parameters() if n in SPT_TOKENS)


def lora_costs(model: nn.Module, names: Iterable[str], rank: int) -> dict[str, int]:
    """r (d_in + d_out) for each named weight of a plain ``nn.Linear`` (the LoRA candidates)."""
    costs = {}
    for name in names:
        owner, _, param = name.rpartition(".")
        module = model.get_submodule(owner)
        if type(module) is nn.Linear and param == "weight":
            costs[name] = rank * (module.in_features + module.out_features)
    return costs


def structured_matrices(scores: Mapping[str, Tensor], costs: Mapping[str, int], k: int, alpha: float) -> list[str]:
    """The weights SPT tunes with LoRA under a budget of ``k`` trainable parameters.

    Matrix m turns structured once tau reaches its ceil(cost_m / alpha)-th largest score, so the
    LoRA sets along the tau sweep are prefixes of the matrices sorted by that score. Returns the
    longest prefix whose cost (LoRAs + weights selected elsewhere) at its switch point fits k;
    that cost grows with the prefix, hence the bisection.
    """
    switch = {
        n: float(torch.topk(scores[n].flatten(), need).values[-1])
        for n, c in costs.items()
        if (need := math.ceil(c / alpha)) <= scores[n].numel()
    }
    order = sorted(switch, key=lambda n: -switch[n])
    order = order[: bisect.bisect_right(list(accumulate(costs[n] for n in order)), k)]  # LoRAs alone fit

    def cost_at_switch(j: int) -> int:
        lora, tau_score = set(order[:j]), switch[order[j - 1]]
        sparse = sum(int((s >= tau_score).sum()) for n, s in scores.items() if n not in lora)
        return sum(costs[n] for n in lora) + sparse

    return order[: bisect.bisect_right(range(1, len(order) + 1), k, key=cost_at_switch)]


class SPTLoRA(SparseImportanceTuning):
    """SPT with LoRA as the structured module (SPT-LoRA); knob k = trainable backbone weights."""

    recipe = Recipe(source="SPT (ziplab/SPT) ViT-B VTAB-1k: AdamW lr 1e-3, wd 1e-4, drop-path 0.1",
                    deviations="candidates are the projection matrices only (no norm/bias vectors); the fused "
                               "qkv is one candidate with one LoRA, where SPT has separate q, k, v")

    def __init__(self, rank: int = 8, alpha: float = 10.0):
        super().__init__(kind="task_specific", estimator="l2")
        self.rank, self.alpha = rank, alpha  # SPT's --low_rank_dim and --alpha defaults

    def hparams(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha, "lora_scale": 1.0, "lora_dropout": LORA_DROPOUT,
                "tokens": list(SPT_TOKENS), "sensitivity_images": SENSITIVITY_IMAGES}

    def default_knob(self, model: nn.Module, backbone: int) -> int:
        return num_selected(NATIVE_RATIO, backbone)

    def count(self, model: nn.Module, knob: int) -> int:
        """k, capped by the most SPT can train: a LoRA on every candidate matrix, other weights dense."""
        weights = shpeft.eligible_parameters(model)
        costs = lora_costs(model, weights, self.rank)
        most = sum(costs[n] if n in costs else p.numel() for n, p in weights.items())
        return min(knob, most + token_count(model))

    def attach(self, model: nn.Module, knob: int, calib: Iterable | None) -> nn.Module:
        scores = shpeft.importance(
            model, calib, kind=self.kind, estimator=self.estimator, max_images=SENSITIVITY_IMAGES
        )
        costs = lora_costs(model, scores, self.rank)
        budget = knob - token_count(model)  # the class token is paid first
        lora = structured_matrices(scores, costs, budget, self.alpha)
        rest = {n: s for n, s in scores.items() if n not in lora}
        n_sparse = min(budget - sum(costs[n] for n in lora), sum(s.numel() for s in rest.values()))
        backbone = shpeft.num_backbone_parameters(model, HEAD)
        if lora:
            import peft  # imported on use: it pulls in transformers (~4 s)

            config = peft.LoraConfig(  # B = 0 at init
                r=self.rank, lora_alpha=self.rank, lora_dropout=LORA_DROPOUT,
                target_modules=[n.removesuffix(".weight") for n in lora],
            )
            model = peft.inject_adapter_in_model(config, model)
        freeze_all_but_head(model)
        if n_sparse > 0:
            shpeft.apply(model, shpeft.select(rest, k=n_sparse, total=backbone), train_extra=HEAD)
        for name, p in model.named_parameters():
            if ".lora_" in name or name in SPT_TOKENS:
                p.requires_grad_(True)
        return model


register("spt", SPTLoRA())
