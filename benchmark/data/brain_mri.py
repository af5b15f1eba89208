"""Brain tumour MRI (the public 4-class collection on Kaggle, masoudnickparvar/brain-tumor-mri-dataset):
a *likely* dataset of the paper (one summary files the paper under brain-tumour detection), not
a confirmed one. A manual download (Kaggle needs a login). Layout under ``<root>/brain_mri/raw/``::

    Training/{glioma,meningioma,notumor,pituitary}/*.jpg
    Testing/{glioma,meningioma,notumor,pituitary}/*.jpg

Official train/test; val is carved out of train. Counts are recorded, not checked.
"""
from __future__ import annotations

from pathlib import Path

from .base import Source
from .download import DatasetUnavailableError
from .folder import scan
from .registry import DatasetSpec, register
from .splits import VAL_FRACTION

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
PAGE = "https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset"
PARTS = {"train": "Training", "test": "Testing"}


def load_brain_mri(raw: Path) -> Source:
    """Read the Kaggle brain-tumour MRI layout at ``raw``."""
    folders = {split: [raw / part / c for c in CLASSES] for split, part in PARTS.items()}
    missing = [str(f) for fs in folders.values() for f in fs if not f.is_dir()]
    if missing:
        raise DatasetUnavailableError(
            f"brain_mri: {len(missing)} class folder(s) missing, e.g. {missing[0]}. Download the dataset "
            f"by hand from {PAGE}, unpack it and place its Training/ and Testing/ folders in\n    {raw}")
    return Source({split: scan(fs) for split, fs in folders.items()}, CLASSES, raw, info={"page": PAGE})


register(DatasetSpec(
    name="brain_mri", modality="brain MRI", num_classes=4, class_names=CLASSES,
    splits=f"official Training/Testing; val = seeded stratified {VAL_FRACTION:.0%} of Training",
    source=f"manual download from Kaggle ({PAGE}); place it in <root>/brain_mri/raw/",
    status="likely", loader=lambda root, size: load_brain_mri(root / "brain_mri" / "raw"),
))
