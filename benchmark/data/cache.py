"""Decode a dataset once into ``paths.cache_dir(root, name, size)``: ``{train,val,test}.pt`` +
meta.json + READY.

- Atomic: the cache is built in a unique temporary folder whose READY marker is written last,
  then moved into place in one rename; a cache without READY (an interrupted run) is rebuilt.
- One writer: ``prepare`` holds a per-dataset file lock while it fetches and decodes; the
  temporaries of killed runs are removed first.
- Current: meta.json records the fingerprint of the inputs (file list, sizes, mtimes); a
  cache whose inputs changed is rebuilt, and an unreadable cached ``.pt`` is named and rebuilt.
- Refused before decoding: fewer than two classes, an empty split, a class without a
  training image.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from .. import paths
from ..values import is_integer
from . import registry
from .base import SPLITS, Checksum, RawSplit, Source, TensorSplit, class_counts
from .errors import CorruptFileError, DataError, DatasetUnavailableError, DegenerateDatasetError
from .files import clean_stale, file_hash, fingerprint, remove, replace_dir, temporary
from .images import decode
from .sources import Request
from .splits import complete

META = "meta.json"
MIN_SIZE = 1  # px: images are resized to any size; a run reads the cache at its model's input size
CHECKSUM_KEY = "checksum"  # meta.json's {"status": official|user-supplied|unpublished, "files": {name: md5}}


def prepare(name: str, root: str | Path, size: int = 224, *, source: str | Path | None = None,
            mirror: str | Path | None = None, accept_checksum_mismatch: bool = False) -> Path:
    """Make sure dataset ``name`` is decoded at ``size`` px under ``root``; return the cache folder.

    ``source``: the user's copy (official archive or extracted folder), read in place; without
    it, the source of the existing cache, else the raw folder (downloading what is missing,
    through ``mirror`` or ``$SHPEFT_DATA_MIRROR`` if set). ``accept_checksum_mismatch`` lets
    files that fail the dataset's check (an md5 that is not the official one, image counts
    that differ from the published ones) be used, recorded as ``user-supplied``.
    Raises a :class:`DataError` saying what to do when the data cannot be had or used."""
    spec = registry.get(name)
    check_size(size)
    out = paths.cache_dir(root, spec.name, size)
    if _is_current(out, source):
        return out
    # before the lock: a missing --from, a zip bomb, or bad data outside the data root creates nothing there
    request = Request.make(spec.raw_dir(root), size, source or _recorded(out).get("from"), mirror,
                           accept_checksum_mismatch)
    early = _read(spec, request) if spec.location is not None else None  # only read, never written
    with _locked(spec.lock_file(root)):
        if _is_current(out, source):  # another process built it while we waited
            return out
        clean_stale(out.parent)
        if spec.location is None:
            clean_stale(request.raw, recursive=True)
        found, splits, split_info = early or _read(spec, request)
        inputs = (request.source,) if request.source else found.inputs
        info = _meta(spec, found, splits, split_info, size, request.source, fingerprint(inputs))
        _build(out, splits, info, spec.name)
    return out


def _read(spec: registry.DatasetSpec, request: Request) -> tuple[Source, dict[str, RawSplit], dict[str, Any]]:
    """The loader's source, its completed train/val/test splits and how they were made; data that
    cannot train is refused here, before decoding."""
    found = spec.loader(request)
    if spec.class_names and found.class_names != spec.class_names:
        raise ValueError(f"{spec.name}: loader found classes {found.class_names}, registry says {spec.class_names}")
    splits, split_info = complete(found.splits)
    check_trainable(spec.name, found.class_names, splits)
    return found, splits, split_info


def check_size(size: object) -> None:
    """A cache's image size: an integer >= :data:`MIN_SIZE` (0 would be an empty cache)."""
    if not is_integer(size) or size < MIN_SIZE:
        raise ValueError(f"size: got {size!r}; expected an integer >= {MIN_SIZE} (pixels)")


def check_trainable(name: str, class_names: tuple[str, ...], splits: Mapping[str, RawSplit]) -> None:
    """Refuse data that cannot train and evaluate a classifier, naming what is wrong."""
    if len(class_names) < 2:
        raise DegenerateDatasetError(f"{name}: needs at least two classes, found {list(class_names)}")
    empty = [s for s in SPLITS if len(splits[s]) == 0]
    if empty:
        raise DegenerateDatasetError(f"{name}: split(s) {empty} have no images")
    counts = class_counts(splits["train"].labels, len(class_names))
    missing = [c for c, n in zip(class_names, counts, strict=True) if n == 0]
    if missing:
        raise DegenerateDatasetError(f"{name}: class(es) {missing} have no training image")


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold the dataset's prepare lock. A call that created the lock file and fails removes it again, so
    a failed first prepare leaves only what its message names (the folder to save a download in).
    filelock keeps lock files on POSIX; removing one races only with a third prepare of the same
    dataset queued behind a second one, which the DAG (one prepare job per dataset) never starts."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        created = not lock.exists()
        with FileLock(lock):
            try:
                yield
            except BaseException:
                if created:
                    lock.unlink(missing_ok=True)
                raise
    except PermissionError as err:
        raise DataError(f"cannot write under {lock.parent} ({err.strerror}): prepare needs a writable data root") \
            from err


def _recorded(out: Path) -> dict[str, Any]:
    """meta.json of a complete cache at ``out`` ({} if there is none or it is unreadable)."""
    if not (out / paths.READY).exists():
        return {}
    try:
        return json.loads((out / META).read_text())
    except (OSError, ValueError):
        return {}


def _is_current(out: Path, source: str | Path | None) -> bool:
    """Whether ``out`` is complete and built from the same, unchanged inputs. A cache whose
    inputs are gone (raw files deleted to save space) is kept, with a warning."""
    recorded = _recorded(out).get("fingerprint")
    if not recorded:
        return False
    if source is not None and recorded["inputs"] != [str(Path(source).expanduser().resolve())]:
        return False
    inputs = [Path(p) for p in recorded["inputs"]]
    if recorded["files"] and not any(p.exists() for p in inputs):
        warnings.warn(f"{out}: its inputs {recorded['inputs']} are gone; using the cache as it was built")
        return True
    now = fingerprint(inputs)
    return (now["files"], now["digest"]) == (recorded["files"], recorded["digest"])


def _build(out: Path, splits: dict[str, RawSplit], info: dict[str, Any], name: str) -> None:
    """Decode ``splits`` into a temporary folder, finish it with meta.json and READY, move it to ``out``."""
    size = info["size"]
    tmp = temporary(out)
    tmp.mkdir(parents=True)
    try:
        for split in SPLITS:
            with _disk_buffer(tmp / f"{split}.decoding.npy", (len(splits[split]), 3, size, size)) as buffer:
                images = decode(splits[split], size, desc=f"{name}/{split}", out=buffer)
                torch.save({"images": images, "labels": torch.from_numpy(splits[split].labels)}, tmp / f"{split}.pt")
        (tmp / META).write_text(json.dumps(info, indent=1))
        (tmp / paths.READY).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        replace_dir(tmp, out)
    finally:
        remove(tmp)


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


def _relative(path: Path, base: Path) -> str:
    return Path(path).relative_to(base).as_posix() if Path(path).is_relative_to(base) else str(path)


def _checksum(found: Source, splits: dict[str, RawSplit]) -> Checksum:
    """The loader's verdict (default ``unpublished``), with the md5 of every file read unless the
    loader recorded the checksummed files itself."""
    verdict = found.checksum or Checksum("unpublished", {})
    if verdict.files:
        return verdict
    read = [*found.index_files, *(p for s in SPLITS if isinstance(splits[s].images, list) for p in splits[s].images)]
    return Checksum(verdict.status, {_relative(p, found.raw): file_hash(p, "md5") for p in read})


def _meta(spec: registry.DatasetSpec, found: Source, splits: dict, split_info: dict, size: int,
          user_source: Path | None, inputs: dict[str, Any]) -> dict[str, Any]:
    n = len(found.class_names)
    files = {s: [_relative(p, found.raw) for p in splits[s].images] for s in SPLITS
             if isinstance(splits[s].images, list)}
    checksum = _checksum(found, splits)
    return {
        "name": spec.name,
        "modality": spec.modality,
        "size": size,
        "class_names": list(found.class_names),
        "num_classes": n,
        "counts": {s: {"total": len(splits[s]), "per_class": class_counts(splits[s].labels, n)} for s in SPLITS},
        "splits": {"description": spec.splits, **split_info},
        "source": spec.source,
        "from": str(user_source) if user_source else None,
        "raw": str(found.raw),
        CHECKSUM_KEY: {"status": checksum.status, "files": checksum.files},
        "fingerprint": inputs,
        "provenance": found.info,
        "format": {"images": "uint8 [N, 3, size, size], RGB", "labels": "int64 [N]"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": files,
    }


_UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, pickle.UnpicklingError,
               zipfile.BadZipFile)


def _read_split(out: Path, split: str, total: int) -> TensorSplit:
    path = out / f"{split}.pt"
    try:
        tensors = TensorSplit(**torch.load(path, mmap=True, weights_only=True))
    except _UNREADABLE as err:
        raise CorruptFileError(f"cached {path} is unreadable ({type(err).__name__}: {err})") from err
    if not len(tensors.images) == len(tensors.labels) == total:
        raise CorruptFileError(f"cached {path} holds {len(tensors.images)} images, meta.json says {total}")
    return tensors


def _read_splits(out: Path) -> dict[str, TensorSplit]:
    counts = _recorded(out)["counts"]
    return {s: _read_split(out, s, counts[s]["total"]) for s in SPLITS}


def load(name: str, root: str | Path, size: int = 224, **prepare_options: Any) -> dict[str, TensorSplit]:
    """The train/val/test splits of dataset ``name`` (prepared first if needed; options as for
    :func:`prepare`). Tensors are memory-mapped from the cache, so large datasets are paged in
    on use. A cached file that cannot be read is reported and the cache rebuilt once."""
    out = prepare(name, root, size, **prepare_options)
    try:
        return _read_splits(out)
    except CorruptFileError as err:
        warnings.warn(f"{err}; rebuilding {out}")
        with _locked(registry.get(name).lock_file(root)):
            (out / paths.READY).unlink(missing_ok=True)
    return _read_splits(prepare(name, root, size, **prepare_options))


def meta(name: str, root: str | Path, size: int = 224) -> dict[str, Any]:
    """The meta.json of dataset ``name`` at ``size`` (prepared first if needed)."""
    return json.loads((prepare(name, root, size) / META).read_text())


def describe(name: str, root: str | Path, size: int = 224) -> dict[str, Any]:
    """Classes and per-split, per-class image counts of a prepared dataset (not preparing it)."""
    out = paths.cache_dir(root, registry.get(name).name, size)
    info = _recorded(out)
    if not info:
        raise DatasetUnavailableError(f"{name} is not prepared at {size} px under {root} (no complete {out}); "
                                      f"run: python -m benchmark.data prepare {name} --root {root} --size {size}")
    classes = info["class_names"]
    per_split = {s: dict(zip(classes, info["counts"][s]["per_class"], strict=True)) for s in SPLITS}
    return {
        "name": info["name"], "size": info["size"], "classes": classes,
        "counts": {s: {**c, "total": info["counts"][s]["total"]} for s, c in per_split.items()},
        "all": {**{c: sum(per_split[s][c] for s in SPLITS) for c in classes},
                "total": sum(info["counts"][s]["total"] for s in SPLITS)},
        "split": info["splits"]["policy"], CHECKSUM_KEY: info[CHECKSUM_KEY]["status"], "from": info.get("from"),
        "cache": str(out),
    }
