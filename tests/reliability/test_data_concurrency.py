"""Concurrent first-time prepares of one dataset (separate processes): always a complete cache."""
from __future__ import annotations

import functools
import hashlib

import benchmark.data as data
from benchmark import paths
from benchmark.data.synthetic import SynthConfig, write_medmnist

from .helpers import BUSI_CFG, SIZE, forked, prepare_busi, temporaries

ROUNDS = 10


def test_two_concurrent_first_prepares_always_give_a_complete_cache(busi_mirror, tmp_path):
    n = BUSI_CFG.n_train + BUSI_CFG.n_val + BUSI_CFG.n_test
    for round_ in range(ROUNDS):
        root = tmp_path / f"round{round_}"
        processes = [forked(prepare_busi, root, busi_mirror) for _ in range(2)]
        for process in processes:
            process.join(120)
        assert [p.exitcode for p in processes] == [0, 0]
        assert paths.ready_marker(root, "busi", SIZE).is_file()
        splits = data.load("busi", root, SIZE)
        assert sum(len(s.labels) for s in splits.values()) == n
        assert sum(len(s.images) for s in splits.values()) == n
        assert temporaries(root) == []


def test_an_alias_and_its_original_prepared_concurrently(tmp_path, monkeypatch):
    """standin-derma and dermamnist share one raw download (and its lock), not their caches."""
    mirror = tmp_path / "mirror"
    path = write_medmnist(mirror, SynthConfig(num_classes=7, size=28), flag="dermamnist")
    monkeypatch.setitem(data.medmnist.INFO["dermamnist"], "MD5", hashlib.md5(path.read_bytes()).hexdigest())
    root = tmp_path / "data"
    processes = [forked(functools.partial(data.prepare, mirror=mirror), name, root, 28)
                 for name in ("dermamnist", "standin-derma")]
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0]
    for name in ("dermamnist", "standin-derma"):
        assert sum(len(s.labels) for s in data.load(name, root, 28).values()) == 180
    assert [p.name for p in paths.raw_dir(root, "dermamnist").iterdir()] == ["dermamnist.npz"]
    assert temporaries(root) == []
