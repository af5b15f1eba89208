"""Brain tumour MRI (the public 4-class collection on Kaggle, masoudnickparvar/brain-tumor-mri-dataset):
a *likely* dataset of the paper (one summary files the paper under brain-tumour detection), not
a confirmed one. A manual download (Kaggle needs a login): pass the archive or the folder with
``--from``, or put it in the raw folder. Layout::

    Training/{glioma,meningioma,notumor,pituitary}/*.jpg
    Testing/{glioma,meningioma,notumor,pituitary}/*.jpg

Official train/test; val is carved out of train. Counts are recorded, not checked.
"""
from __future__ import annotations

from pathlib import Path

from .base import Source
from .errors import DatasetUnavailableError
from .folder import scan
from .registry import DatasetSpec, register
from .sources import Request, local_copy
from .splits import VAL_FRACTION

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
PAGE = "https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset"
PARTS = {"train": "Training", "test": "Testing"}
UNPACKED_BYTES = 243_000_000  # the unpacked Kaggle archive (Training/ and Testing/)
LAYOUT = f"Training/{{{','.join(CLASSES)}}}/ and Testing/{{...}}/ (the folder or its only sub-folder)"


def find_layout(folder: Path) -> Path | None:
    """``folder`` (or one of its sub-folders) if it holds Training/ and Testing/."""
    candidates = [folder, *(d for d in folder.iterdir() if d.is_dir())] if folder.is_dir() else []
    return next((d for d in candidates if all((d / p).is_dir() for p in PARTS.values())), None)


def load_brain_mri(request: Request) -> Source:
    """Read the Kaggle brain-tumour MRI layout from the user's copy or the raw folder."""
    if request.source is not None:
        data = request.user_layout("brain_mri", find_layout, "brain-tumor-mri", LAYOUT, UNPACKED_BYTES)
    else:
        data = find_layout(request.raw) or request.raw
    folders = {split: [data / part / c for c in CLASSES] for split, part in PARTS.items()}
    missing = [str(f) for fs in folders.values() for f in fs if not f.is_dir()]
    if missing:
        raise DatasetUnavailableError(
            f"brain_mri: {len(missing)} class folder(s) missing, e.g. {missing[0]}. Download the dataset "
            f"by hand from {PAGE} and give the archive or the folder holding Training/ and Testing/ "
            f"to {local_copy('brain_mri')}, or place them in\n    {request.raw}")
    return Source({split: scan(fs) for split, fs in folders.items()}, CLASSES, data, info={"page": PAGE})


register(DatasetSpec(
    name="brain_mri", modality="brain MRI", num_classes=4, class_names=CLASSES,
    splits=f"official Training/Testing; val = seeded stratified {VAL_FRACTION:.0%} of Training",
    source=f"manual download from Kaggle ({PAGE}); prepare brain_mri --from <archive or folder>",
    status="likely", loader=load_brain_mri,
))
