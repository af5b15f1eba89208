"""MedMNIST+ 2D datasets: the official ``.npz`` files, fetched with the URLs and MD5s of the
``medmnist`` package's INFO, read directly with numpy (medmnist's own downloader is not used:
it has no timeout).

Files are ``<flag>_<size>.npz`` (``<flag>.npz`` for 28 px, medmnist's naming) in the dataset's
raw folder, or the user's own copy (``--from`` the file, or a folder holding it by that name),
with keys ``{train,val,test}_{images,labels}``: images uint8 [N, H, W] (grayscale) or
[N, H, W, 3], labels [N, 1]. MedMNIST+ publishes 28/64/128/224 px; another size is resized
from the next larger file (224 for anything above).

Checksums: a file whose md5 is one of the flag's official md5s is used as is (``official``);
any other is refused, naming both md5s, unless the mismatch is accepted explicitly
(``--accept-checksum-mismatch``), which meta.json records as ``user-supplied`` with its md5.
"""
from __future__ import annotations

import importlib.util
import math
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from .base import SPLITS, Checksum, RawSplit, Source
from .download import ACCEPT_FLAG
from .errors import ChecksumMismatchError, CorruptFileError, DatasetUnavailableError
from .files import file_hash
from .registry import DatasetSpec, register
from .sources import Request

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
HINT = "MedMNIST+ files are on Zenodo (https://zenodo.org/records/10519652)."
_CORRUPT = (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError)  # what numpy/zipfile raise on a bad file


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
        try:
            with self._open() as (f, shape, dtype):
                row_bytes = math.prod(shape[1:]) * dtype.itemsize
                for start in range(0, shape[0], rows):
                    n = min(rows, shape[0] - start)
                    yield np.frombuffer(bytearray(f.read(n * row_bytes)), dtype).reshape(n, *shape[1:])
        except _CORRUPT as err:
            raise CorruptFileError(f"{self.path}: {self.member} cannot be read ({type(err).__name__}: {err})") from err

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        with np.load(self.path) as npz:
            return npz[self.member.removesuffix(".npy")][index]


def _medmnist_info() -> dict:
    """medmnist's ``INFO`` table (urls, md5s, classes, counts), read from its ``info.py`` alone: importing the
    ``medmnist`` package runs its ``__init__``, which imports its torch datasets and sklearn evaluators
    (about 1.8 s of every benchmark process's start-up); the table needs none of that."""
    package = importlib.util.find_spec("medmnist")  # locates the package without running its __init__
    spec = importlib.util.spec_from_file_location("_medmnist_info", Path(package.submodule_search_locations[0]) / "info.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.INFO


INFO = _medmnist_info()


def read_npz(path: Path) -> dict[str, RawSplit]:
    """The three splits of a MedMNIST-format ``.npz`` (images lazily, labels read now); a file
    that is not one raises :class:`CorruptFileError` naming it, before anything is decoded."""
    try:
        with np.load(path) as npz:
            labels = {s: npz[f"{s}_labels"] for s in SPLITS}
        return {s: RawSplit(NpzMember(path, f"{s}_images"), labels[s]) for s in SPLITS}
    except _CORRUPT as err:
        raise CorruptFileError(f"{path} is not a readable MedMNIST .npz ({type(err).__name__}: {err})") from err


def class_names(flag: str) -> tuple[str, ...]:
    """The class names of ``flag``, in label order."""
    labels = INFO[flag]["label"]
    return tuple(labels[str(i)] for i in range(len(labels)))


def published(flag: str) -> dict[int, tuple[str, str]]:
    """Per published size, the (url, md5) of ``flag``'s file."""
    info = INFO[flag]
    suffix = {size: "" if size == 28 else f"_{size}" for size in SIZES}
    return {size: (info[f"url{suffix[size]}"], info[f"MD5{suffix[size]}"]) for size in SIZES}


def _user_file(flag: str, source: Path, file_size: int) -> Path:
    """The user's npz: ``source`` itself, or the official file name inside the folder ``source``."""
    if source.is_file():
        return source
    names = [npz_name(flag, s) for s in sorted(SIZES, key=lambda s: (s != file_size, -s))]
    found = next((source / n for n in names if (source / n).is_file()), None)
    if found is None:
        raise DatasetUnavailableError(f"{flag}: none of {names} is in {source}")
    return found


def verify(flag: str, path: Path, file_size: int, accept_mismatch: bool) -> Checksum:
    """``official`` if ``path``'s md5 is one of ``flag``'s published md5s; else refused, naming
    both md5s and the option that accepts it, or (accepted) ``user-supplied``. ``path`` is only read."""
    actual = file_hash(path, "md5")
    files = published(flag)
    if actual in {md5 for _, md5 in files.values()}:
        return Checksum("official", {path.name: actual})
    claimed = next((s for s in SIZES if path.name == npz_name(flag, s)), file_size)
    if not accept_mismatch:
        raise ChecksumMismatchError(
            f"{flag}: {path} has md5 {actual}, but the official {npz_name(flag, claimed)} has md5 "
            f"{files[claimed][1]}. If this file is what you mean to use, pass {ACCEPT_FLAG} "
            f"(meta.json then records it as user-supplied with md5 {actual}).")
    return Checksum("user-supplied", {path.name: actual})


def load_medmnist(flag: str, request: Request) -> Source:
    """MedMNIST+ ``flag`` at the published size closest to (not below) the requested one: the
    user's file if given (md5 verified), else the official file, fetched into the raw folder."""
    file_size = next((s for s in SIZES if s >= request.size), SIZES[-1])
    url, md5 = published(flag)[file_size]
    if request.source is not None:
        path = _user_file(flag, request.source, file_size)
    else:
        path = request.fetch(url, request.raw / npz_name(flag, file_size), md5=md5, hint=HINT)
    checksum = verify(flag, path, file_size, request.accept_checksum_mismatch)
    return Source(read_npz(path), class_names(flag), path.parent, checksum=checksum, inputs=(path,),
                  info={"file": path.name, "url": url, "md5": md5, "npz_size": file_size})


def medmnist_spec(flag: str, name: str | None = None, status: str = "medmnist") -> DatasetSpec:
    """The spec of MedMNIST+ ``flag`` (under another ``name``/``status`` for an alias)."""
    names_ = class_names(flag)
    n = INFO[flag]["n_samples"]
    return DatasetSpec(
        name=name or flag, modality=MODALITIES[flag], num_classes=len(names_), class_names=names_,
        splits=f"official MedMNIST train/val/test ({n['train']}/{n['val']}/{n['test']})",
        source=f"MedMNIST+ {flag} ({INFO[flag]['license']}), automatic download from Zenodo, MD5-checked",
        status=status, loader=partial(load_medmnist, flag), raw_name=flag,
    )


for _flag in MODALITIES:
    register(medmnist_spec(_flag))
for _name, _flag in STAND_INS.items():
    register(medmnist_spec(_flag, _name, status="stand-in"))
