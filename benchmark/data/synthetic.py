"""Small synthetic datasets written in the real on-disk formats (MedMNIST ``.npz``, image folder,
COVID-CT layout) and read back by the real loaders, so tests and smoke runs exercise real code.

Each image is a noisy background with a Gaussian blob whose position (on a circle, jittered) and
colour depend on the class: a signal a tiny ViT (or a nearest-centroid rule on pixels) learns
in a few epochs, but not a trivial one.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import covid_ct
from .base import Checksum, Source
from .files import file_hash, remove, replace_dir, temporary
from .folder import SPLIT_DIR, load_folder
from .medmnist import npz_name, read_npz
from .registry import DatasetSpec, register
from .sources import Request
from .splits import STRATIFIED

FLAG = "synthetic-medmnist"  # its files follow medmnist's <root>/<flag>/raw/<flag>_<size>.npz


@dataclass(frozen=True)
class SynthConfig:
    """Size of a synthetic dataset; defaults are tiny (seconds to write and to train on)."""

    num_classes: int = 4
    n_train: int = 100
    n_val: int = 40
    n_test: int = 40
    size: int = 32
    seed: int = 0
    channels: int = 3  # 1 writes grayscale, as several MedMNIST sets are

    def class_names(self) -> tuple[str, ...]:
        return tuple(f"class{i}" for i in range(self.num_classes))

    def counts(self) -> dict[str, int]:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}


def make_images(n: int, num_classes: int, size: int, seed: int, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` class-balanced images, uint8 [n, size, size, channels] ([n, size, size] if one
    channel), and their int64 labels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes)
    angle = 2 * np.pi * labels / num_classes + rng.normal(0, 0.25, n)
    cx, cy = 0.5 + 0.25 * np.cos(angle), 0.5 + 0.25 * np.sin(angle)
    yy, xx = np.mgrid[0:size, 0:size] / size
    blob = np.exp(-((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2) / (2 * 0.15**2))
    phase = labels[:, None] / num_classes + np.arange(channels)[None, :] / 3
    colour = 0.6 + 0.4 * np.cos(2 * np.pi * phase) if channels > 1 else np.ones((n, 1))
    images = 0.2 + 0.6 * blob[..., None] * colour[:, None, None, :] + rng.normal(0, 0.12, (n, size, size, channels))
    images = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
    return (images[..., 0] if channels == 1 else images), labels.astype(np.int64)


def make_splits(cfg: SynthConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train/val/test images and labels, each split from its own seed."""
    return {s: make_images(n, cfg.num_classes, cfg.size, cfg.seed * 10 + i, cfg.channels)
            for i, (s, n) in enumerate(cfg.counts().items())}


def write_medmnist(out: Path, cfg: SynthConfig = SynthConfig(), flag: str = FLAG) -> Path:
    """Write ``out/<flag>_<size>.npz`` with MedMNIST's keys, dtypes and shapes (uint8 images,
    uint8 labels [N, 1]); returns its path."""
    path = Path(out) / npz_name(flag, cfg.size)
    arrays = {}
    for split, (images, labels) in make_splits(cfg).items():
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.astype(np.uint8)[:, None]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def _write_dir(out: Path, fill: Callable[[Path], None]) -> Path:
    """Run ``fill`` on a temporary folder, then move it to ``out`` (never a half-written ``out``)."""
    out = Path(out)
    tmp = temporary(out)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        replace_dir(tmp, out)
    finally:
        remove(tmp)
    return out


def write_folder(out: Path, cfg: SynthConfig = SynthConfig(), split_files: bool = False) -> Path:
    """Write the generic image-folder layout ``out/<class>/*.png`` (+ ``out/splits/*.txt`` when
    ``split_files``; otherwise the loader makes its seeded 70/10/20 split)."""
    def fill(tmp: Path) -> None:
        for split, (images, labels) in make_splits(cfg).items():
            names = [f"{cfg.class_names()[y]}/{split}_{i:04d}.png" for i, y in enumerate(labels)]
            for image, name in zip(images, names, strict=True):
                _save(image, tmp / name)
            if split_files:
                (tmp / SPLIT_DIR).mkdir(exist_ok=True)
                (tmp / SPLIT_DIR / f"{split}.txt").write_text("\n".join(names) + "\n")
    return _write_dir(out, fill)


def write_covid_ct(out: Path, cfg: SynthConfig = SynthConfig(num_classes=2)) -> Path:
    """Write the COVID-CT repository layout (2 classes; non-COVID images alternate .png/.jpg)."""
    cfg = replace(cfg, num_classes=2)

    def fill(tmp: Path) -> None:
        for split, (images, labels) in make_splits(cfg).items():
            lists: dict[str, list[str]] = {c: [] for c in covid_ct.CLASSES}
            for i, (image, y) in enumerate(zip(images, labels, strict=True)):
                name = f"{split}-{i:04d}" + (".jpg" if y == 1 and i % 2 else ".png")
                _save(image, tmp / "Images-processed" / covid_ct.FOLDERS[y] / name)
                lists[covid_ct.CLASSES[y]].append(name)
            for cls, names in lists.items():
                path = tmp / covid_ct.split_list(cls, split)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(names) + "\n")
    return _write_dir(out, fill)


WRITERS: dict[str, Callable[..., Path]] = {
    "medmnist": write_medmnist, "folder": write_folder, "covid-ct": write_covid_ct,
}


def _generated(write: Callable[[Path, SynthConfig], Path], read: Callable[[Path], Source],
               cfg: SynthConfig) -> Callable[[Request], Source]:
    """A loader that writes the synthetic raw folder (at the first size asked for) unless it
    exists, then reads it with the real loader ``read``."""
    def loader(request: Request) -> Source:
        if not request.raw.is_dir():
            write(request.raw, replace(cfg, size=request.size))
        return read(request.raw)
    return loader


def _read_synthetic_npz(raw: Path) -> Source:
    path = next(raw.glob("*.npz"))
    return Source(read_npz(path), _DEFAULT.class_names(), raw, info={"file": path.name}, inputs=(path,),
                  checksum=Checksum("unpublished", {path.name: file_hash(path, "md5")}))


_DEFAULT = SynthConfig()
_NOTE = "generated on prepare in the real on-disk format; class-dependent blob position and colour"
register(DatasetSpec(
    name=FLAG, modality="synthetic", num_classes=_DEFAULT.num_classes,
    class_names=_DEFAULT.class_names(), splits="generated train/val/test (MedMNIST .npz)",
    source=f"{_NOTE} (MedMNIST .npz, read by the MedMNIST loader)", status="synthetic",
    loader=_generated(write_medmnist, _read_synthetic_npz, _DEFAULT),
))
register(DatasetSpec(
    name="synthetic-folder", modality="synthetic", num_classes=_DEFAULT.num_classes,
    class_names=_DEFAULT.class_names(), splits=f"no split files: {STRATIFIED}",
    source=f"{_NOTE} (image folder, read by the folder loader)", status="synthetic",
    loader=_generated(write_folder, load_folder, _DEFAULT),
))
register(DatasetSpec(
    name="synthetic-covid-ct", modality="synthetic", num_classes=2, class_names=covid_ct.CLASSES,
    splits="generated split files in the COVID-CT layout",
    source=f"{_NOTE} (COVID-CT layout, read by the COVID-CT loader)", status="synthetic",
    loader=_generated(write_covid_ct, lambda raw: covid_ct.read_layout(raw, expected=None),
                      replace(_DEFAULT, num_classes=2)),
))
