"""Helpers of the fault-injection tests: tree snapshots, forked `prepare` runs, cache comparison."""
from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import torch

import benchmark.data as data
from benchmark.data.synthetic import SynthConfig

SIZE = 8
BUSI_CFG = SynthConfig(n_train=30, n_val=5, n_test=5, size=12)  # 40 images of 3 classes


def tree_state(folder: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (md5, mtime_ns)} of every file under ``folder``, hidden ones included."""
    return {p.relative_to(folder).as_posix(): (hashlib.md5(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[Path]:
    """Temporaries of this package left anywhere under ``folder``."""
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name]


def splits_of(root: Path, name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {s: (t.images.clone(), t.labels.clone()) for s, t in data.load(name, root, SIZE).items()}


def same_splits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[s][0], b[s][0]) and torch.equal(a[s][1], b[s][1]) for s in a)


def _child(target: Callable[..., object], args: tuple) -> None:
    torch.set_num_threads(1)  # no OpenMP pool in a forked child
    target(*args)


def forked(target: Callable[..., object], *args: object) -> multiprocessing.Process:
    """``target(*args)`` started in a forked process (inherits the imports: starts in milliseconds)."""
    process = multiprocessing.get_context("fork").Process(target=_child, args=(target, args))
    process.start()
    return process


def prepare_busi(root: Path, mirror: Path) -> Path:
    return data.prepare("busi", root, SIZE, mirror=mirror, accept_checksum_mismatch=True)
