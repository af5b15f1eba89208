"""Decode a dataset once into ``<root>/<dirname>/<size>/{train,val,test}.pt`` + meta.json + READY.

The cache is built in a temporary folder whose READY marker is written last, then renamed into
place in one step; a cache without READY (an interrupted run) is rebuilt, a cache with READY is
never decoded again. Delete the folder to rebuild it after changing the raw files.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import registry
from .base import SPLITS, Source, TensorSplit, class_counts
from .images import decode
from .splits import complete

READY = "READY"
META = "meta.json"


def cache_dir(name: str, root: str | Path, size: int) -> Path:
    """Where the decoded splits of dataset ``name`` at ``size`` px live."""
    return Path(root) / registry.get(name).dirname / str(size)


def prepare(name: str, root: str | Path, size: int = 224) -> Path:
    """Make sure dataset ``name`` is decoded at ``size`` px under ``root``; return the cache folder.

    Fetches (or asks for) the raw files on first use, through the dataset's loader; raises
    ``DatasetUnavailableError`` with instructions when they cannot be had."""
    spec = registry.get(name)
    out = cache_dir(name, root, size)
    if (out / READY).exists():
        return out
    source = spec.loader(Path(root), size)
    if spec.class_names and source.class_names != spec.class_names:
        raise ValueError(f"{name}: loader found classes {source.class_names}, registry says {spec.class_names}")
    splits, split_info = complete(source.splits)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for split in SPLITS:
            with _disk_buffer(tmp / f"{split}.decoding.npy", (len(splits[split]), 3, size, size)) as buffer:
                images = decode(splits[split], size, desc=f"{name}/{split}", out=buffer)
                torch.save({"images": images, "labels": torch.from_numpy(splits[split].labels)}, tmp / f"{split}.pt")
        info = _meta(spec, source, splits, split_info, size)
        (tmp / META).write_text(json.dumps(info, indent=1))
        (tmp / READY).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@contextmanager
def _disk_buffer(path: Path, shape: tuple[int, ...]) -> Iterator[torch.Tensor]:
    """A uint8 tensor of ``shape`` backed by a memory-mapped file (removed afterwards): a large
    split is decoded through the page cache instead of being held in RAM."""
    if math.prod(shape) == 0:
        yield torch.empty(shape, dtype=torch.uint8)
        return
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    try:
        yield torch.from_numpy(array)
    finally:
        del array
        path.unlink(missing_ok=True)


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished cache into place (unless a concurrent run already did)."""
    if (out / READY).exists():
        return
    shutil.rmtree(out, ignore_errors=True)  # a partial cache left by an interrupted run
    try:
        os.replace(tmp, out)
    except OSError:
        if not (out / READY).exists():
            raise


def _meta(spec: registry.DatasetSpec, source: Source, splits: dict, split_info: dict, size: int) -> dict[str, Any]:
    n = len(source.class_names)
    files = {s: [Path(p).relative_to(source.raw).as_posix() for p in splits[s].images]
             for s in SPLITS if isinstance(splits[s].images, list)}
    return {
        "name": spec.dirname,
        "modality": spec.modality,
        "size": size,
        "class_names": list(source.class_names),
        "num_classes": n,
        "counts": {s: {"total": len(splits[s]), "per_class": class_counts(splits[s].labels, n)} for s in SPLITS},
        "splits": {"description": spec.splits, **split_info},
        "source": spec.source,
        "raw": str(source.raw),
        "provenance": source.info,
        "format": {"images": "uint8 [N, 3, size, size], RGB", "labels": "int64 [N]"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": files,
    }


def load(name: str, root: str | Path, size: int = 224) -> dict[str, TensorSplit]:
    """The train/val/test splits of dataset ``name`` (prepared first if needed). Tensors are
    memory-mapped from the cache, so large datasets are paged in on use."""
    out = prepare(name, root, size)
    return {s: TensorSplit(**torch.load(out / f"{s}.pt", mmap=True, weights_only=True)) for s in SPLITS}


def meta(name: str, root: str | Path, size: int = 224) -> dict[str, Any]:
    """The meta.json of dataset ``name`` at ``size`` (prepared first if needed)."""
    return json.loads((prepare(name, root, size) / META).read_text())
