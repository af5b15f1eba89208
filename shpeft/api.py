"""The public entry points: score, select, apply, report."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from .eligible import HEAD, eligible_parameters, in_modules
from .importance import (
    _ESTIMATOR_REDUCTION,
    Estimator,
    LossFn,
    Reduction,
    Scores,
    check_finite,
    gradient_statistics,
    hybrid_scores,
    task_agnostic_scores,
    taylor_scores,
)
from .sparse import delta_sites


@dataclass(frozen=True)
class ScoreKind:
    """How one kind of importance is computed: which gradient statistic it needs (if any)
    and how it turns (weights, gradient statistic) into scores."""

    reduction: Callable[[Estimator], Reduction | None]
    combine: Callable[[dict[str, nn.Parameter], Scores | None, Estimator, float], Scores]


SCORE_KINDS: dict[str, ScoreKind] = {
    "task_specific": ScoreKind(lambda est: _ESTIMATOR_REDUCTION[est], lambda w, g, est, lam: g),
    "task_agnostic": ScoreKind(lambda est: None, lambda w, g, est, lam: task_agnostic_scores(w, est)),
    "hybrid": ScoreKind(
        lambda est: _ESTIMATOR_REDUCTION[est], lambda w, g, est, lam: hybrid_scores(g, w, est, lam)
    ),
    "taylor": ScoreKind(lambda est: "signed", lambda w, g, est, lam: taylor_scores(g, w, est)),
}


def importance(
    model: nn.Module,
    loader: Iterable | None = None,
    *,
    kind: str = "hybrid",
    estimator: Estimator = "l1",
    lam: float = 1.0,
    n_batches: int | None = None,
    max_images: int = 1000,
    loss_fn: LossFn | None = None,
    patterns: Sequence[str] | None = None,
) -> Scores:
    """Importance score of every eligible weight of ``model`` (dict name -> float32 tensor).

    ``kind`` is one of ``task_specific``, ``task_agnostic``, ``hybrid`` (the paper's default)
    or ``taylor``; ``estimator`` is ``l1`` or ``l2``. Kinds that need gradients read
    ``(images, labels)`` batches from ``loader``: ``n_batches`` of them, or by default as many
    as cover ``max_images`` images.
    """
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown importance kind {kind!r}; choose one of {sorted(SCORE_KINDS)}")
    if estimator not in _ESTIMATOR_REDUCTION:
        raise ValueError(f"unknown estimator {estimator!r}; choose 'l1' or 'l2'")
    spec = SCORE_KINDS[kind]
    params = eligible_parameters(model, patterns)
    reduction = spec.reduction(estimator)
    grads = None
    if reduction is not None:
        if loader is None:
            raise ValueError(f"importance kind {kind!r} needs a data loader for its gradients")
        grads, _ = gradient_statistics(
            model, loader, params, reduction=reduction, n_batches=n_batches,
            max_images=max_images, loss_fn=loss_fn,
        )
    scores = spec.combine(params, grads, estimator, lam)
    check_finite(scores)
    return scores


def trainable_report(
    model: nn.Module, *, head: Sequence[str] = HEAD, backbone_params: int | None = None
) -> dict[str, float | int]:
    """Trainable parameter counts and the achieved ratio (trainable backbone / backbone).

    Sparse deltas count as backbone weights; the frozen weights they modify are the
    backbone. Pass ``backbone_params`` when a method added modules (LoRA, adapters) so the
    denominator stays the original backbone.
    """
    delta_ids = {id(site.delta) for site in delta_sites(model).values()}
    trainable_backbone = head_trainable = original = 0
    for name, p in model.named_parameters():
        is_head = in_modules(name, head)
        if p.requires_grad:
            if is_head:
                head_trainable += p.numel()
            else:
                trainable_backbone += p.numel()
        if not is_head and id(p) not in delta_ids:
            original += p.numel()
    backbone = backbone_params or original
    return {
        "trainable": trainable_backbone + head_trainable,
        "trainable_backbone": trainable_backbone,
        "head_params": head_trainable,
        "backbone_params": backbone,
        "ratio": trainable_backbone / backbone,
    }


def num_backbone_parameters(model: nn.Module, head: Sequence[str] = HEAD) -> int:
    """Parameters of ``model`` outside the classification head; sparse deltas are not counted,
    so the number is the same before and after :func:`shpeft.apply`."""
    delta_ids = {id(site.delta) for site in delta_sites(model).values()}
    return sum(
        p.numel() for n, p in model.named_parameters() if not in_modules(n, head) and id(p) not in delta_ids
    )


__all__ = ["SCORE_KINDS", "importance", "num_backbone_parameters", "trainable_report"]
