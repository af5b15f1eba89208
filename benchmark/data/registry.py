"""The dataset registry: one :class:`DatasetSpec` per name, looked up by :func:`get`.

Loader modules register their datasets on import; user image folders are registered with
``benchmark.data.register_folder`` or resolved on the fly from names like ``folder:/path``
(a *resolver* per name prefix), so nothing in the package branches on dataset names.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .base import Source

STATUSES = ("confirmed", "likely", "stand-in", "medmnist", "synthetic", "user")

Loader = Callable[[Path, int], Source]  # (data root, image size) -> the dataset's raw splits


@dataclass(frozen=True)
class DatasetSpec:
    """What the benchmark knows about a dataset before reading it, and how to read it.

    ``loader(root, size)`` finds (downloads, generates) the raw files under ``root`` and returns
    a :class:`~benchmark.data.base.Source`; it raises ``DatasetUnavailableError`` with
    instructions when it cannot. ``dirname`` is the folder under ``root`` that holds the cache
    (aliases such as the stand-ins share their original's folder). ``class_names`` may be
    empty for user folders, whose classes are only known once the folder is read.
    """

    name: str
    modality: str
    num_classes: int
    class_names: tuple[str, ...]
    splits: str  # how train/val/test are defined (official files, seeded stratified split, ...)
    source: str  # where the data comes from and how it is fetched (shown by `list`, in meta.json)
    status: str  # one of STATUSES: the dataset's relation to the paper
    loader: Loader = field(repr=False, compare=False)
    dirname: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"{self.name}: status {self.status!r} is not one of {STATUSES}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if not self.dirname:
            object.__setattr__(self, "dirname", self.name)


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
