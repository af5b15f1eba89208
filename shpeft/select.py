"""Masks: exactly k weights with the highest scores, with deterministic tie-breaking."""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from .importance import check_finite

Scope = Literal["global", "per_layer"]


@dataclass(frozen=True)
class Mask:
    """The selected weights: sorted flat indices per parameter, plus how they were chosen."""

    indices: dict[str, Tensor]
    shapes: dict[str, torch.Size]
    thresholds: dict[str, float]
    ratio: float
    total: int
    scope: str

    @property
    def k(self) -> int:
        return sum(int(i.numel()) for i in self.indices.values())

    @property
    def n_eligible(self) -> int:
        return sum(s.numel() for s in self.shapes.values())

    @property
    def threshold(self) -> float:
        """The lowest score that made it into the mask."""
        return min(self.thresholds.values())

    def dense(self, name: str) -> Tensor:
        """Boolean mask of parameter ``name`` in its own shape."""
        out = torch.zeros(self.shapes[name].numel(), dtype=torch.bool)
        out[self.indices[name].cpu()] = True
        return out.view(self.shapes[name])


def is_real(x: object) -> bool:
    """A real number (Python or numpy scalar), but not a bool: ``ratio=True`` is a mistake, not 1.0."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def is_integer(x: object) -> bool:
    """An integer (Python or numpy scalar), but not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_total(total: int) -> int:
    """``total`` (the ratio's denominator) as an int, validated: a positive number of weights."""
    if not (is_integer(total) and total > 0):
        raise ValueError(f"total must be a positive number of weights, got {total!r}")
    return int(total)


def num_selected(ratio: float, total: int) -> int:
    """k = round(ratio * total), validated: ratio in (0, 1], total >= 1 and k >= 1.

    The one place the ratio -> k rule lives; callers that know k pass ``select(k=...)``.
    """
    total = _check_total(total)
    if not (is_real(ratio) and 0 < ratio <= 1):
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    k = round(float(ratio) * total)
    if k < 1:
        raise ValueError(
            f"ratio {ratio:g} of {total} weights selects k = 0 weights; use a ratio >= {0.5 / total:.3g}"
        )
    return k


def top_k_flat(scores: Tensor, k: int) -> tuple[Tensor, float]:
    """Indices (sorted) of the k largest entries of a 1-D tensor and the k-th largest value.

    Ties at the threshold go to the lowest indices, so the result never depends on the
    order in which ``torch.topk`` happens to return equal values.
    """
    threshold = torch.topk(scores, k, sorted=False).values.min()
    above = torch.nonzero(scores > threshold).flatten()
    at = torch.nonzero(scores == threshold).flatten()[: k - above.numel()]
    return torch.sort(torch.cat([above, at])).values, float(threshold)


def _resolve_k(ratio: float | None, k: int | None, total: int) -> tuple[int, float]:
    """(k, ratio) from exactly one of them: k via :func:`num_selected`, or k as given (1 <= k <= total)."""
    if (ratio is None) == (k is None):
        raise ValueError("pass exactly one of ratio= and k=")
    if k is None:
        return num_selected(ratio, total), float(ratio)
    if not (is_integer(k) and 1 <= k <= total):
        raise ValueError(f"k must be an integer in [1, total = {total}], got {k!r}")
    return int(k), int(k) / total


def _split_quota(k: int, sizes: list[int]) -> list[int]:
    """Largest-remainder split of k proportional to ``sizes`` (sums to exactly k)."""
    n = sum(sizes)
    exact = [k * s / n for s in sizes]
    quota = [int(e) for e in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in by_remainder[: k - sum(quota)]:
        quota[i] += 1
    return quota


def select(
    scores: Mapping[str, Tensor],
    ratio: float | None = None,
    *,
    k: int | None = None,
    total: int | None = None,
    scope: Scope = "global",
) -> Mask:
    """Mask of exactly k highest-scoring weights: k = round(ratio * total), or ``k`` as given.

    Pass exactly one of ``ratio`` and ``k``. ``total`` is the denominator of the ratio
    (default: the number of scored weights; the benchmark passes the backbone's parameter
    count); with ``k`` it only sets the recorded ``mask.ratio = k / total``.
    ``scope="global"`` ranks all weights together; ``"per_layer"`` gives each tensor its
    proportional share of k.
    """
    if scope not in get_args(Scope):
        raise ValueError(f"unknown scope {scope!r}; choose one of {get_args(Scope)}")
    if not scores:
        raise ValueError("no scores given: the model has no eligible weights")
    names = list(scores)
    sizes = [scores[n].numel() for n in names]
    n_eligible = sum(sizes)
    total = n_eligible if total is None else _check_total(total)
    k, ratio = _resolve_k(ratio, k, total)
    if k > n_eligible:
        raise ValueError(f"k = {k} exceeds the {n_eligible} eligible weights")
    check_finite(scores)
    if scope == "global":
        flat = torch.cat([scores[n].detach().flatten().float() for n in names])
        chosen, threshold = top_k_flat(flat, k)
        offsets = torch.tensor([0, *sizes], device=chosen.device).cumsum(0)
        indices = {
            n: chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]
            for i, n in enumerate(names)
        }
        thresholds = {n: threshold for n in names}
    else:
        indices, thresholds = {}, {}
        for n, k_n in zip(names, _split_quota(k, sizes)):
            if k_n:
                indices[n], thresholds[n] = top_k_flat(scores[n].detach().flatten().float(), k_n)
            else:
                indices[n], thresholds[n] = torch.empty(0, dtype=torch.long), float("inf")
    return Mask(
        indices={n: i.cpu() for n, i in indices.items()},
        shapes={n: scores[n].shape for n in names},
        thresholds=thresholds,
        ratio=ratio,
        total=total,
        scope=scope,
    )
