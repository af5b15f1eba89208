"""MedMNIST+ 2D datasets: the official ``.npz`` files, fetched with the URLs and MD5s of the
``medmnist`` package's INFO, read directly with numpy (medmnist's own downloader is not used:
it has no timeout).

Files live at ``<root>/<flag>/raw/<flag>_<size>.npz`` (``<flag>.npz`` for 28 px, medmnist's
naming), with keys ``{train,val,test}_{images,labels}``: images uint8 [N, H, W] (grayscale) or
[N, H, W, 3], labels [N, 1]. MedMNIST+ publishes 28/64/128/224 px; another size is resized
from the next larger file (224 for anything above).
"""
from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
from medmnist import INFO
from numpy.lib import format as npy_format

from .base import SPLITS, RawSplit, Source
from .download import fetch
from .registry import DatasetSpec, register

SIZES = (28, 64, 128, 224)
# Single-label 2D MedMNIST datasets and their imaging modality (ChestMNIST is multi-label: not here).
MODALITIES = {
    "pathmnist": "colon pathology",
    "dermamnist": "dermatoscopy",
    "octmnist": "retinal OCT",
    "pneumoniamnist": "chest X-ray",
    "retinamnist": "fundus photography",
    "breastmnist": "breast ultrasound",
    "bloodmnist": "blood cell microscopy",
    "tissuemnist": "kidney cortex microscopy",
    "organamnist": "abdominal CT (axial)",
    "organcmnist": "abdominal CT (coronal)",
    "organsmnist": "abdominal CT (sagittal)",
}
# Stand-ins for the paper's three unconfirmed datasets: MedMNIST sets of modalities the three
# confirmed ones (CT, histopathology, ultrasound) do not cover. Replace them once known.
STAND_INS = {"standin-derma": "dermamnist", "standin-blood": "bloodmnist", "standin-retina": "retinamnist"}


def npz_name(flag: str, size: int) -> str:
    """medmnist's file name for ``flag`` at ``size`` px."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


class NpzMember:
    """An array stored in an ``.npz``, read lazily: :meth:`chunks` streams consecutive rows
    from the zip member, so a 13 GB PathMNIST-224 split is never held in memory at once."""

    def __init__(self, path: Path, key: str):
        self.path, self.member = Path(path), f"{key}.npy"
        with self._open() as (_, shape, dtype):
            self.shape, self.dtype = shape, dtype

    @contextmanager
    def _open(self) -> Iterator[tuple[IO[bytes], tuple[int, ...], np.dtype]]:
        with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as f:
            version = npy_format.read_magic(f)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            if fortran_order:
                raise ValueError(f"{self.path}:{self.member} is stored in Fortran order")
            yield f, shape, dtype

    def __len__(self) -> int:
        return self.shape[0]

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``rows`` rows, in order."""
        with self._open() as (f, shape, dtype):
            row_bytes = math.prod(shape[1:]) * dtype.itemsize
            for start in range(0, shape[0], rows):
                n = min(rows, shape[0] - start)
                yield np.frombuffer(bytearray(f.read(n * row_bytes)), dtype).reshape(n, *shape[1:])

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        with np.load(self.path) as npz:
            return npz[self.member.removesuffix(".npy")][index]


def read_npz(path: Path) -> dict[str, RawSplit]:
    """The three splits of a MedMNIST-format ``.npz`` (images lazily, labels read now)."""
    with np.load(path) as npz:
        labels = {s: npz[f"{s}_labels"] for s in SPLITS}
    return {s: RawSplit(NpzMember(path, f"{s}_images"), labels[s]) for s in SPLITS}


def class_names(flag: str) -> tuple[str, ...]:
    """The class names of ``flag``, in label order."""
    labels = INFO[flag]["label"]
    return tuple(labels[str(i)] for i in range(len(labels)))


def load_medmnist(flag: str, root: Path, size: int) -> Source:
    """Fetch (MD5-verified) and read MedMNIST+ ``flag`` at the published size closest to ``size``."""
    file_size = next((s for s in SIZES if s >= size), SIZES[-1])
    key = "" if file_size == 28 else f"_{file_size}"
    url, md5 = INFO[flag][f"url{key}"], INFO[flag][f"MD5{key}"]
    raw = root / flag / "raw"
    path = fetch(url, raw / npz_name(flag, file_size), md5=md5,
                 hint="MedMNIST+ files are on Zenodo (https://zenodo.org/records/10519652).")
    return Source(read_npz(path), class_names(flag), raw,
                  info={"file": path.name, "url": url, "md5": md5, "npz_size": file_size})


def medmnist_spec(flag: str, name: str | None = None, status: str = "medmnist") -> DatasetSpec:
    """The spec of MedMNIST+ ``flag`` (under another ``name``/``status`` for an alias)."""
    names_ = class_names(flag)
    n = INFO[flag]["n_samples"]
    return DatasetSpec(
        name=name or flag, modality=MODALITIES[flag], num_classes=len(names_), class_names=names_,
        splits=f"official MedMNIST train/val/test ({n['train']}/{n['val']}/{n['test']})",
        source=f"MedMNIST+ {flag} ({INFO[flag]['license']}), automatic download from Zenodo, MD5-checked",
        status=status, loader=partial(load_medmnist, flag), dirname=flag,
    )


for _flag in MODALITIES:
    register(medmnist_spec(_flag))
for _name, _flag in STAND_INS.items():
    register(medmnist_spec(_flag, _name, status="stand-in"))
