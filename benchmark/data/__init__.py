"""Datasets of the benchmark: a registry of real loaders (each in its authors' on-disk format),
MedMNIST+, user image folders and synthetic data, decoded once into a uint8 tensor cache.

    path = prepare("covid_ct", "data", size=224)   # fetch/verify/decode once -> data/covid_ct/224/
    path = prepare("busi", "data", source="~/Downloads/Dataset_BUSI_with_GT")  # the user's copy
    splits = load("covid_ct", "data")              # {"train"|"val"|"test": TensorSplit(images, labels)}
    few = subset(splits["train"], n_per_class=10, seed=0)

Every module of this package is imported on start-up, so a dataset module dropped in here
(one file calling ``register``) is available by name with no other change.
``python -m benchmark.data list`` shows every registered dataset and its status for the paper.
"""
import importlib
import pkgutil

from .base import SPLITS, Checksum, TensorSplit
from .cache import CHECKSUM_KEY, describe, load, meta, prepare
from .download import MIRROR_ENV
from .errors import (
    ChecksumMismatchError,
    CorruptFileError,
    DataError,
    DatasetUnavailableError,
    DegenerateDatasetError,
)
from .folder import register_folder
from .registry import DatasetSpec, get, names, register
from .sources import Request
from .splits import subset

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CHECKSUM_KEY", "MIRROR_ENV", "SPLITS", "Checksum", "ChecksumMismatchError", "CorruptFileError", "DataError",
    "DatasetSpec", "DatasetUnavailableError", "DegenerateDatasetError", "Request", "TensorSplit",
    "describe", "get", "load", "meta", "names", "prepare", "register", "register_folder", "subset",
]
