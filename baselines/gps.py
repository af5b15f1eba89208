"""GPS: Gradient-based Parameter Selection (Zhang et al., CVPR 2024, arXiv 2312.10136; reference
code github.com/FightingFighting/GPS, ``train_gps.py:calculate_gradient`` and
``utils/pruning.py:prune_by_percentile_gradient_perCell``).

1. Gradient: one pass over the data (here: the calibration batches), the signed gradients of a
   supervised contrastive loss (SupCon, temperature 0.07, as GPS's ``--contrastive``) on the
   pre-logits features of two views of each image, summed over batches; a weight's score is
   the magnitude of that sum.
2. Selection: for every output neuron (row) of every weight matrix -- the patch embedding (its
   kernel flattened per output channel), qkv, proj, fc1, fc2 -- the n input connections with the
   largest scores (GPS's ``--times_para``: n = 1 in 18 of its 19 VTAB-1k scripts).
3. GPS's mask rules for the rest: every bias (and layer-scale ``gamma``) trains whole, as the
   head; norms, ``pos_embed`` and ``cls_token`` stay frozen. The biases count against the ratio.

The selected weights train as shpeft sparse deltas (``shpeft.apply``), the same updates as GPS's
masked dense gradients under its Adam with weight decay 0 (a zero gradient never moves a weight).

Named deviations from FightingFighting/GPS (also in docs/method.md):

* budget: GPS trains a whole n per neuron, so its totals jump by the number of rows. Here the
  knob is k = trainable backbone parameters (biases included): the k - biases selected weights
  are n per row plus the remainder to the rows whose next-best connection scores highest
  (:func:`per_row_top`), so any total above the bias count is reachable.
* the second view is the horizontal mirror of each calibration image (GPS: two random
  crop / flip / colour-jitter / grey-scale augmentations of it);
* the pass runs in eval mode (GPS: train mode, the same at its drop-path 0: ViTs have no
  batch norm) over the calibration sample (GPS: the whole training set);
* ties go to the lowest column, then the lowest row (GPS: numpy's argsort order).
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import shpeft
from shpeft import HEAD, in_modules
from shpeft.importance import check_finite, gradient_statistics
from shpeft.select import num_selected, top_k_flat

from .registry import TOKENS, PeftMethod, Recipe, register

FROZEN = ("norm", *TOKENS)  # GPS: a name containing these stays frozen ("norm", "pos_embed", "cls_token")
WHOLE = ("bias", "gamma")  # GPS: a name containing these trains whole (the head too)
CONNECTIONS_PER_NEURON = 1  # GPS's --times_para in its VTAB-1k scripts (2 for patch_camelyon)
TEMPERATURE = 0.07  # GPS's SupConLoss (temperature = base temperature)


def role(name: str, param: Tensor) -> str:
    """GPS's rule for a backbone parameter: ``"frozen"``, ``"whole"`` (trained) or ``"rows"`` (per-row selection)."""
    if any(s in name for s in FROZEN):
        return "frozen"
    if any(s in name for s in WHOLE):
        return "whole"
    return "rows" if param.ndim >= 2 else "frozen"


def parameters_by_role(model: nn.Module, kind: str) -> dict[str, nn.Parameter]:
    """The backbone parameters of ``model`` whose :func:`role` is ``kind``."""
    return {n: p for n, p in model.named_parameters() if not in_modules(n, HEAD) and role(n, p) == kind}


def numel(params: Mapping[str, Tensor]) -> int:
    """Elements in all of ``params``."""
    return sum(p.numel() for p in params.values())


def _rows(score: Tensor) -> Tensor:
    """A weight's scores as rows x inputs (a conv kernel flattened per output channel, as GPS)."""
    return score.detach().float().reshape(score.shape[0], -1)


def per_row_top(scores: Mapping[str, Tensor], k: int, total: int | None = None) -> shpeft.Mask:
    """Mask of k weights: n per row of every tensor, plus one more in the rows whose (n+1)-th
    best score is highest.

    Equivalently the first k weights in the order (rank within its row, -score, row), rows
    numbered across tensors in ``scores`` order; ties within a row go to the lowest column. A
    row with fewer than n + 1 inputs gives all it has. ``total`` is only the recorded ratio's
    denominator (default: the number of scored weights).
    """
    check_finite(scores)
    rows = {n: _rows(s) for n, s in scores.items()}
    n_weights = numel(rows)
    total = total or n_weights
    if not (0 <= k <= n_weights):
        raise ValueError(f"k must be in [0, {n_weights}] (the scored weights), got {k}")

    def taken(level: int) -> int:  # weights in the first ``level`` ranks of every row
        return sum(r.shape[0] * min(level, r.shape[1]) for r in rows.values())

    level = bisect.bisect_right(range(max(r.shape[1] for r in rows.values()) + 1), k, key=taken) - 1
    ranked = {n: torch.sort(r, dim=1, descending=True, stable=True) for n, r in rows.items()}
    next_best = {n: values[:, level] for n, (values, _) in ranked.items() if level < values.shape[1]}
    sizes = [v.numel() for v in next_best.values()]
    extra = torch.zeros(sum(sizes), dtype=torch.bool, device=next(iter(rows.values())).device)
    if k > taken(level):
        extra[top_k_flat(torch.cat(list(next_best.values())), k - taken(level))[0]] = True
    extra = dict(zip(next_best, extra.split(sizes)))
    indices, thresholds = {}, {}
    for name, (values, order) in ranked.items():
        ranks = min(level + 1, order.shape[1])  # the ranks a row can give: level, + 1 where extra
        keep = torch.zeros(order.shape[0], ranks, dtype=torch.bool, device=order.device)
        keep[:, :level] = True
        if name in extra:
            keep[:, level] = extra[name]
        row = keep.nonzero()[:, 0]
        indices[name] = torch.sort(row * order.shape[1] + order[:, :ranks][keep]).values.cpu()
        picked = values[:, :ranks][keep]
        thresholds[name] = float(picked.min()) if picked.numel() else math.inf
    return shpeft.Mask(
        indices=indices, shapes={n: s.shape for n, s in scores.items()}, thresholds=thresholds,
        ratio=k / total, total=total, scope="per_row",
    )


def supcon_loss(features: Tensor, labels: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020) of ``features`` [batch, views, dim].

    Every view is an anchor; its positives are the other views of its image and all views of
    same-label images; each anchor's loss is minus the mean log-softmax of its positives over
    all other views; the loss is the mean over anchors (GPS's ``SupConLoss``, mode "all").
    """
    batch, views = features.shape[:2]
    z = F.normalize(features, dim=-1).transpose(0, 1).reshape(batch * views, -1)  # view-major
    self_pair = torch.eye(batch * views, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_pair, -math.inf)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    y = labels.to(z.device).repeat(views)
    positive = (y[:, None] == y[None, :]) & ~self_pair
    return -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1)).mean()


class MirroredViews(nn.Module):
    """A timm ViT's pre-logits features of each image and of its horizontal mirror: [batch, 2, dim]."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, images: Tensor) -> Tensor:
        both = torch.cat([images, images.flip(-1)])
        features = self.vit.forward_head(self.vit.forward_features(both), pre_logits=True)
        return torch.stack(features.chunk(2), dim=1)


def gradient_scores(model: nn.Module, calib: Sequence) -> dict[str, Tensor]:
    """|sum over the calibration batches of the SupCon gradient| of every per-row matrix."""
    params = parameters_by_role(model, "rows")
    mean_grad, _ = gradient_statistics(
        MirroredViews(model), calib, params, reduction="signed", n_batches=len(calib), loss_fn=supcon_loss
    )
    return {n: g.abs_() for n, g in mean_grad.items()}  # the mean: the sum's ranking


@register("gps")
class GPS(PeftMethod):
    """GPS with k = trainable backbone parameters (biases + selected weights) as the knob."""

    knob = "k"
    needs_data = True
    recipe = Recipe(
        lr=2e-3, weight_decay=0.0, drop_path=0.0,
        source="GPS (FightingFighting/GPS) ViT-B/16 VTAB-1k scripts: Adam, lr 2e-3 (their modal and median "
               "per-task lr), weight decay 0, drop-path 0",
        deviations="k = biases + n per neuron + a remainder to the neurons with the best next connection (GPS: a "
                   "whole n per neuron); the SupCon gradient's second view is the mirrored image (GPS: random "
                   "crop/flip/colour augmentations), over the calibration sample (GPS: the training set)",
    )

    def hparams(self) -> dict[str, Any]:
        return {"loss": "supcon", "temperature": TEMPERATURE, "views": ["image", "horizontal mirror"],
                "native_connections_per_neuron": CONNECTIONS_PER_NEURON, "trained_whole": list(WHOLE),
                "frozen": list(FROZEN)}

    @staticmethod
    def bounds(model: nn.Module) -> tuple[int, int]:
        """(fewest, most) trainable backbone parameters: the biases alone, or with every matrix."""
        whole = numel(parameters_by_role(model, "whole"))
        return whole, whole + numel(parameters_by_role(model, "rows"))

    def default_knob(self, model: nn.Module, backbone: int) -> int:
        neurons = sum(p.shape[0] for p in parameters_by_role(model, "rows").values())
        return self.bounds(model)[0] + CONNECTIONS_PER_NEURON * neurons

    def solve(self, model: nn.Module, ratio: float, backbone: int) -> int:
        return self.count(model, num_selected(ratio, backbone))

    def count(self, model: nn.Module, knob: int) -> int:
        fewest, most = self.bounds(model)
        return min(max(knob, fewest), most)

    def attach(self, model: nn.Module, knob: int, calib: Sequence | None) -> nn.Module:
        whole = parameters_by_role(model, "whole")
        k = self.count(model, knob) - numel(whole)
        mask = per_row_top(gradient_scores(model, calib), k, total=shpeft.num_backbone_parameters(model, HEAD))
        model = shpeft.apply(model, mask, train_extra=HEAD)
        for p in whole.values():  # the same objects after apply (a wrapped layer keeps its bias)
            p.requires_grad_(True)
        return model
