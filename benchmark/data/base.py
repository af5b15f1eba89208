"""The data types passed between loaders, the cache and users, and the count check they share."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .errors import DatasetUnavailableError, DegenerateDatasetError

SPLITS = ("train", "val", "test")
CHECKSUM_STATUSES = ("official", "user-supplied", "unpublished")


class TensorSplit(NamedTuple):
    """One cached split: ``images`` uint8 [N, 3, H, W] (RGB), ``labels`` int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class RawSplit:
    """One split as a loader finds it: image files to decode, or an already decoded array
    ([N, H, W] grayscale or [N, H, W, C]; a numpy array or a lazy one such as
    ``medmnist.NpzMember``), with one integer label per image."""

    images: Any | list[Path]
    labels: np.ndarray

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim == 2 and labels.shape[1] == 1:  # MedMNIST stores labels as [N, 1]
            labels = labels[:, 0]
        if labels.ndim != 1 or len(labels) != len(self.images):
            raise ValueError(f"need one label per image: {len(self.images)} images, labels {labels.shape}")
        self.labels = labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> RawSplit:
        """The samples at ``indices``, in that order."""
        images = [self.images[i] for i in indices] if isinstance(self.images, list) else self.images[indices]
        return RawSplit(images, self.labels[indices])


@dataclass(frozen=True)
class Checksum:
    """How the files a dataset was read from were verified: ``official`` (they match the published
    checksums), ``user-supplied`` (they do not, and the user accepted that), ``unpublished`` (no
    checksum is published; ``files`` then records the md5 of what was read). ``files`` maps a
    file name (relative to the source's folder) to its md5."""

    status: str
    files: dict[str, str]

    def __post_init__(self) -> None:
        if self.status not in CHECKSUM_STATUSES:
            raise ValueError(f"checksum status {self.status!r} is not one of {CHECKSUM_STATUSES}")


@dataclass
class Source:
    """A dataset as its authors publish it. ``splits`` holds the splits the source defines:
    all of train/val/test, train/test (val is carved out of train), or a single ``all``
    (split by seeded stratified sampling). ``raw`` is the folder image paths are relative to
    (meta.json lists each split's files relative to it); ``info`` is provenance for meta.json.
    ``checksum`` is given by loaders of checksummed files; without it the cache records the md5
    of every image read and of the ``index_files`` (split lists) as ``unpublished``. ``inputs``
    are the files and folders whose change makes the cache stale (default: ``raw``)."""

    splits: dict[str, RawSplit]
    class_names: tuple[str, ...]
    raw: Path
    info: dict[str, Any] = field(default_factory=dict)
    checksum: Checksum | None = None
    index_files: tuple[Path, ...] = ()
    inputs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        self.inputs = tuple(self.inputs) or (self.raw,)
        for name, split in self.splits.items():
            if len(split) and not 0 <= split.labels.min() <= split.labels.max() < len(self.class_names):
                raise DegenerateDatasetError(f"split {name!r} has labels outside 0..{len(self.class_names) - 1} "
                                             f"(classes {list(self.class_names)})")


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    """Number of samples per class (classes without samples count 0)."""
    return np.bincount(labels, minlength=num_classes).tolist()


def split_counts(source: Source) -> dict[str, list[int]]:
    """Per split of ``source``, the number of samples of each class."""
    return {name: class_counts(split.labels, len(source.class_names)) for name, split in source.splits.items()}


def check_counts(dataset: str, found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]] | None,
                 where: Path, accept: bool = False) -> Checksum:
    """The check of a dataset without published checksums: its per-class image counts against
    the published ones (``expected=None`` skips it). Counts that differ (an incomplete download
    or extraction, or another release) are refused, unless ``accept``-ed: then the data is
    recorded as ``user-supplied``. The md5s of the files read are filled in by the cache."""
    found = {k: list(v) for k, v in found.items()}
    if expected is None or found == {k: list(v) for k, v in expected.items()}:
        return Checksum("unpublished", {})
    if accept:
        return Checksum("user-supplied", {})
    raise DatasetUnavailableError(
        f"{dataset}: per-class image counts {found} differ from the published {dict(expected)}. "
        f"The copy under {where} is incomplete or another release: use the original files, or pass "
        f"--accept-checksum-mismatch to use this copy anyway (recorded as user-supplied)."
    )
