"""Datasets of the benchmark: a registry of real loaders (each in its authors' on-disk format),
MedMNIST+, user image folders and synthetic data, decoded once into a uint8 tensor cache.

    path = prepare("covid_ct", "data", size=224)   # fetch/verify/decode once -> data/covid_ct/224/
    splits = load("covid_ct", "data")              # {"train"|"val"|"test": TensorSplit(images, labels)}
    few = subset(splits["train"], n_per_class=10, seed=0)

``python -m benchmark.data list`` shows every registered dataset and its status for the paper.
"""
from . import brain_mri, busi, chaoyang, covid_ct, medmnist, synthetic  # noqa: F401  (register datasets)
from .base import SPLITS, TensorSplit
from .cache import cache_dir, load, meta, prepare
from .download import DatasetUnavailableError
from .folder import register_folder
from .registry import DatasetSpec, get, names, register
from .splits import subset

__all__ = [
    "SPLITS", "DatasetSpec", "DatasetUnavailableError", "TensorSplit", "cache_dir", "get", "load", "meta",
    "names", "prepare", "register", "register_folder", "subset",
]
