"""Seeded, stratified splits: completing a source's splits to train/val/test, and subsets.

Every dataset exposes train, val and test. A source that publishes all three is used as is;
one that publishes train/test gets a validation split carved out of train; one that publishes
none is split 70/10/20. All of it is stratified by class and seeded with ``SPLIT_SEED``, a
property of the dataset (not of a training run), and recorded in meta.json.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from .base import SPLITS, RawSplit, TensorSplit

SPLIT_SEED = 0
FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}  # for sources without any split
VAL_FRACTION = 0.1  # share of the official train split that becomes val when there is none
STRATIFIED = "seeded stratified " + "/".join(f"{v:.0%}" for v in FRACTIONS.values())  # for descriptions


def _shuffled_classes(labels: np.ndarray, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Per class (in label order), that class's indices in a seeded random order."""
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        yield idx[rng.permutation(len(idx))]


def _allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split ``n`` samples by ``fractions`` (largest remainder), giving every part at least one
    sample when ``n`` allows, so small classes still appear in val and test."""
    exact = n * fractions
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1
    for i in np.flatnonzero((counts == 0) & (fractions > 0)):
        j = int(counts.argmax())
        if counts[j] > 1:
            counts[j] -= 1
            counts[i] += 1
    return counts


def stratified_indices(labels: np.ndarray, fractions: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
    """Sorted indices per part, each class divided by ``fractions``; deterministic in ``seed``."""
    names = list(fractions)
    weights = np.array([fractions[n] for n in names], dtype=float)
    weights /= weights.sum()
    parts: dict[str, list[np.ndarray]] = {n: [np.empty(0, dtype=np.int64)] for n in names}
    for idx in _shuffled_classes(np.asarray(labels), np.random.default_rng(seed)):
        bounds = np.cumsum(_allocate(len(idx), weights))[:-1]
        for name, chunk in zip(names, np.split(idx, bounds), strict=True):
            parts[name].append(chunk)
    return {n: np.sort(np.concatenate(p)) for n, p in parts.items()}


def complete(splits: Mapping[str, RawSplit], seed: int = SPLIT_SEED) -> tuple[dict[str, RawSplit], dict[str, Any]]:
    """train/val/test from what a source publishes, and a description of how they were made."""
    if set(splits) == set(SPLITS):
        return dict(splits), {"policy": "official train/val/test"}
    if set(splits) == {"train", "test"}:
        fractions = {"train": 1 - VAL_FRACTION, "val": VAL_FRACTION}
        parts = stratified_indices(splits["train"].labels, fractions, seed)
        out = {name: splits["train"].take(idx) for name, idx in parts.items()}
        out["test"] = splits["test"]
        return out, {"policy": "official train/test; val = seeded stratified share of official train",
                     "val_fraction": VAL_FRACTION, "seed": seed}
    if set(splits) == {"all"}:
        parts = stratified_indices(splits["all"].labels, FRACTIONS, seed)
        return ({name: splits["all"].take(idx) for name, idx in parts.items()},
                {"policy": "seeded stratified split", "fractions": FRACTIONS, "seed": seed})
    raise ValueError(f"a source must publish train/val/test, train/test or all; got {sorted(splits)}")


def subset(split: TensorSplit, *, n_per_class: int | None = None, fraction: float | None = None,
           seed: int = 0) -> TensorSplit:
    """A seeded, stratified subset of ``split`` (the paper's data-scarcity setting): either
    ``n_per_class`` samples of each class (all of a smaller class) or ``fraction`` of each class
    (at least one). With one seed, smaller subsets are contained in larger ones."""
    if (n_per_class is None) == (fraction is None):
        raise ValueError("give exactly one of n_per_class and fraction")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    keep = []
    for idx in _shuffled_classes(split.labels.numpy(), np.random.default_rng(seed)):
        k = n_per_class if n_per_class is not None else max(1, round(fraction * len(idx)))
        keep.append(idx[:k])
    index = torch.from_numpy(np.sort(np.concatenate(keep)))
    return TensorSplit(split.images[index], split.labels[index])
