"""Importance scores of individual weights (pure functions; no training loop here).

Definitions (see docs/method.md), for an eligible weight w with task-loss gradients g_b on
batches b = 1..n:

* task-specific  L1: mean_b |g_b|        L2: mean_b g_b^2
* task-agnostic  L1: |w|                 L2: w^2
* hybrid            I_ts / mean(I_ts) + lam * I_ta / mean(I_ta)   (means over all eligible weights)
* taylor         L1: |w * gbar|          L2: (w * gbar)^2          (gbar = mean_b g_b)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Estimator = Literal["l1", "l2"]
Reduction = Literal["abs", "sq", "signed"]
Scores = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

_ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {"l1": torch.abs, "l2": torch.square}
_REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "abs": torch.abs,
    "sq": torch.square,
    "signed": lambda g: g,
}
_ESTIMATOR_REDUCTION: dict[str, Reduction] = {"l1": "abs", "l2": "sq"}


class NonFiniteError(ValueError):
    """A loss or score became NaN/Inf."""


def _estimator(name: str) -> Callable[[Tensor], Tensor]:
    if name not in _ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {sorted(_ESTIMATORS)}")
    return _ESTIMATORS[name]


def check_finite(scores: Mapping[str, Tensor]) -> None:
    """Raise ``ValueError`` naming the first tensor that holds NaN or Inf."""
    for name, s in scores.items():
        if not torch.isfinite(s).all():
            bad = int((~torch.isfinite(s)).sum())
            raise NonFiniteError(f"importance scores of {name!r} contain {bad} NaN/Inf values")


def gradient_statistics(
    model: nn.Module,
    loader: Iterable,
    params: Mapping[str, nn.Parameter],
    *,
    reduction: Reduction,
    n_batches: int | None = None,
    max_images: int = 1000,
    loss_fn: LossFn | None = None,
) -> tuple[Scores, int]:
    """Mean over batches of ``reduction(grad)`` of the task loss for each parameter in ``params``.

    Gradients are folded into one float32 buffer per parameter as soon as autograd produces
    them (post-accumulate hooks), so no second full-size buffer is kept. Only ``params``
    require grad during the pass; requires_grad flags and train/eval mode are restored after.
    ``n_batches=None`` uses the batches needed for ``max_images`` images (at least one).
    Returns the statistics and the number of batches used.
    """
    if n_batches is not None and n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    reduce = _REDUCTIONS[reduction]
    loss_fn = loss_fn or F.cross_entropy
    device = next(iter(params.values())).device
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    wanted = {id(p) for p in params.values()}
    saved_flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training

    def fold(name: str) -> Callable[[Tensor], None]:
        def hook(p: Tensor) -> None:
            acc[name].add_(reduce(p.grad.float()))
            p.grad = None

        return hook

    handles = [p.register_post_accumulate_grad_hook(fold(n)) for n, p in params.items()]
    for p in model.parameters():
        p.requires_grad_(id(p) in wanted)
    model.eval()  # deterministic scores: no dropout / drop-path
    used = images = 0
    try:
        for images_b, labels_b in loader:
            loss = loss_fn(model(images_b.to(device)), labels_b.to(device))
            if not torch.isfinite(loss):
                raise NonFiniteError(f"task loss is {loss.item()} on importance batch {used}")
            loss.backward()
            used += 1
            images += len(labels_b)
            if (n_batches is not None and used >= n_batches) or (
                n_batches is None and images >= max_images
            ):
                break
    finally:
        for h in handles:
            h.remove()
        for p, flag in saved_flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
    if used == 0:
        raise ValueError("the importance loader yielded no batches")
    for a in acc.values():
        a.div_(used)
    return acc, used


def task_agnostic_scores(params: Mapping[str, Tensor], estimator: Estimator = "l1") -> Scores:
    """|w| (L1) or w^2 (L2) of the pretrained weights, in float32."""
    est = _estimator(estimator)
    return {n: est(p.detach().float()) for n, p in params.items()}


def global_mean(tensors: Iterable[Tensor]) -> float:
    """Mean over every entry of every tensor (float64 accumulation), in one pass, so the
    tensors can be produced one at a time by a generator."""
    total, count = 0.0, 0
    for t in tensors:
        total += float(t.double().sum())
        count += t.numel()
    return total / count


def hybrid_scores(
    task_specific: Scores, weights: Mapping[str, Tensor], estimator: Estimator, lam: float
) -> Scores:
    """I_ts / mean(I_ts) + lam * I_ta / mean(I_ta), written into the ``task_specific`` buffers.

    I_ta is formed one tensor at a time (for its mean, then for the sum), so the only
    full-size buffers are the task-specific ones.
    """
    est = _estimator(estimator)
    mean_ts = global_mean(task_specific.values())
    mean_ta = global_mean(est(w.detach().double()) for w in weights.values())
    if mean_ts <= 0 or mean_ta <= 0 or not math.isfinite(mean_ts + mean_ta):
        raise ValueError(
            f"cannot normalise scores: mean task-specific={mean_ts}, mean task-agnostic={mean_ta}"
        )
    for name, ts in task_specific.items():
        ts.div_(mean_ts).add_(est(weights[name].detach().float()), alpha=lam / mean_ta)
    return task_specific


def taylor_scores(mean_grad: Scores, weights: Mapping[str, Tensor], estimator: Estimator) -> Scores:
    """First-order Taylor term |w * gbar| (L1) or (w * gbar)^2 (L2), in the ``mean_grad`` buffers."""
    est = _estimator(estimator)
    for name, g in mean_grad.items():
        g.copy_(est(g.mul_(weights[name].detach().float())))
    return mean_grad
