import numpy as np
import pytest
import torch

from benchmark.data import TensorSplit, subset
from benchmark.data.base import RawSplit
from benchmark.data.splits import FRACTIONS, VAL_FRACTION, complete, stratified_indices

LABELS = np.repeat([0, 1, 2], [50, 30, 7])


def test_stratified_split_is_deterministic_disjoint_and_stratified():
    parts = stratified_indices(LABELS, FRACTIONS, seed=3)
    assert parts.keys() == FRACTIONS.keys()
    for a, b in zip(parts.values(), stratified_indices(LABELS, FRACTIONS, seed=3).values()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(parts["train"], stratified_indices(LABELS, FRACTIONS, seed=4)["train"])
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything.tolist()) == list(range(len(LABELS)))  # a partition
    for c, n in enumerate(np.bincount(LABELS)):
        for name, f in FRACTIONS.items():
            got = int((LABELS[parts[name]] == c).sum())
            assert abs(got - f * n) <= 1, (name, c, got)
            assert got >= 1  # even the 7-sample class reaches val and test


def test_complete_keeps_official_splits():
    raw = {s: RawSplit(np.zeros((4, 2, 2), np.uint8), [0, 1, 0, 1]) for s in ("train", "val", "test")}
    splits, info = complete(raw)
    assert all(splits[s] is raw[s] for s in raw) and info["policy"] == "official train/val/test"


def test_complete_carves_val_out_of_train():
    train = RawSplit([f"img{i}" for i in range(len(LABELS))], LABELS)
    test = RawSplit(["t0", "t1"], [0, 1])
    splits, info = complete({"train": train, "test": test}, seed=0)
    assert splits["test"] is test
    assert len(splits["train"]) + len(splits["val"]) == len(LABELS)
    assert not set(splits["train"].images) & set(splits["val"].images)
    assert abs(len(splits["val"]) - VAL_FRACTION * len(LABELS)) <= 3
    assert set(splits["val"].labels.tolist()) == {0, 1, 2}
    assert info["seed"] == 0 and info["val_fraction"] == VAL_FRACTION


def test_complete_splits_an_unsplit_source():
    splits, info = complete({"all": RawSplit(np.arange(len(LABELS) * 4, dtype=np.uint8).reshape(-1, 2, 2), LABELS)})
    assert [len(splits[s]) for s in ("train", "val", "test")] == [61, 9, 17]
    assert info["fractions"] == FRACTIONS and info["seed"] == 0
    with pytest.raises(ValueError, match="train/val/test"):
        complete({"train": splits["train"]})


def test_subset_per_class_and_fraction_are_stratified_nested_and_seeded():
    split = TensorSplit(torch.arange(len(LABELS)).view(-1, 1, 1, 1).to(torch.uint8), torch.from_numpy(LABELS))
    five = subset(split, n_per_class=5, seed=1)
    assert torch.bincount(five.labels).tolist() == [5, 5, 5]
    ten = subset(split, n_per_class=10, seed=1)
    assert torch.bincount(ten.labels).tolist() == [10, 10, 7]  # all of the small class
    assert set(five.images.flatten().tolist()) <= set(ten.images.flatten().tolist())
    assert torch.equal(subset(split, n_per_class=5, seed=1).images, five.images)
    assert not torch.equal(subset(split, n_per_class=5, seed=2).images, five.images)
    tenth = subset(split, fraction=0.1, seed=0)
    assert torch.bincount(tenth.labels).tolist() == [5, 3, 1]
    with pytest.raises(ValueError):
        subset(split, n_per_class=1, fraction=0.5)
    with pytest.raises(ValueError):
        subset(split, fraction=0)
