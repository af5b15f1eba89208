"""The dataset registry: one :class:`DatasetSpec` per name, looked up by :func:`get`.

Dataset modules register their datasets on import (every module of this package is imported
by ``benchmark.data``, so a new dataset is one new file); user image folders are registered
with ``benchmark.data.register_folder`` or resolved on the fly from names like ``folder:/path``
(a *resolver* per name prefix), so nothing in the package branches on dataset names.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from .base import Source
from .sources import Request

STATUSES = ("confirmed", "likely", "stand-in", "medmnist", "synthetic", "user")

Loader = Callable[[Request], Source]  # the request (raw folder, size, user source, mirror) -> raw splits


@dataclass(frozen=True)
class DatasetSpec:
    """What the benchmark knows about a dataset before reading it, and how to read it.

    ``loader(request)`` finds (downloads, generates) the raw files in ``request.raw`` or reads
    the user's ``request.source`` and returns a :class:`~benchmark.data.base.Source`; it raises
    a ``DataError`` with instructions when it cannot. The raw folder is the registry's to hand
    out: ``paths.raw_dir(root, raw_name)`` (aliases such as the stand-ins name their original
    as ``raw_name``, sharing its downloads but not its cache), or ``location`` for a dataset
    that lives outside the data root (a user image folder). ``class_names`` and ``num_classes``
    may be empty/0 for user folders; a prepared dataset's meta.json is the truth.
    """

    name: str
    modality: str
    num_classes: int
    class_names: tuple[str, ...]
    splits: str  # how train/val/test are defined (official files, seeded stratified split, ...)
    source: str  # where the data comes from and how it is fetched (shown by `list`, in meta.json)
    status: str  # one of STATUSES: the dataset's relation to the paper
    loader: Loader = field(repr=False, compare=False)
    raw_name: str = ""  # whose raw folder this dataset reads (default: its own name)
    location: Path | None = None  # a raw folder outside the data root

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"{self.name}: status {self.status!r} is not one of {STATUSES}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if not self.raw_name:
            object.__setattr__(self, "raw_name", self.name)

    def raw_dir(self, root: str | Path) -> Path:
        """The folder this dataset's loader reads and downloads into."""
        return self.location if self.location is not None else paths.raw_dir(root, self.raw_name)

    def lock_file(self, root: str | Path) -> Path:
        """The lock ``prepare`` holds while writing this dataset (shared with its aliases, which
        write the same raw folder)."""
        return paths.raw_dir(root, self.raw_name).with_name(".prepare.lock")


_REGISTRY: dict[str, DatasetSpec] = {}
_RESOLVERS: dict[str, Callable[[str], DatasetSpec]] = {}


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add ``spec`` under ``spec.name``; re-registering a name needs ``replace=True``."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_resolver(prefix: str, resolve: Callable[[str], DatasetSpec]) -> None:
    """Let names ``<prefix>:<argument>`` resolve to ``resolve(argument)`` (e.g. ``folder:``)."""
    _RESOLVERS[prefix] = resolve


def get(name: str) -> DatasetSpec:
    """The spec registered as ``name`` (or built by its prefix's resolver); KeyError otherwise."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, argument = name.partition(":")
    if sep and prefix in _RESOLVERS:
        return register(_RESOLVERS[prefix](argument), replace=True)
    prefixes = ", ".join(f"{p}:<path>" for p in sorted(_RESOLVERS))
    raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(names())}; or {prefixes}")


def names() -> list[str]:
    """All registered dataset names, sorted."""
    return sorted(_REGISTRY)
