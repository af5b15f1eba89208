"""BUSI, Breast Ultrasound Images (Al-Dhabyani et al., Data in Brief 2020), a dataset of the
paper: 780 images, 133 normal / 437 benign / 210 malignant.

The authors' layout (``Dataset_BUSI.zip`` unpacked)::

    Dataset_BUSI_with_GT/{normal,benign,malignant}/*.png

where files whose name contains ``_mask`` are segmentation masks, not samples. ``--from`` takes
the zip, the ``Dataset_BUSI_with_GT`` folder or its parent; without it the zip is fetched into
the raw folder. No checksum is published: the md5 of every image read is recorded, and the
image counts are checked. There is no official split: a seeded stratified 70/10/20 split is
made and recorded in meta.json.
"""
from __future__ import annotations

from pathlib import Path

from .base import Source, check_counts, split_counts
from .download import extract_layout
from .errors import DatasetUnavailableError
from .folder import scan
from .registry import DatasetSpec, register
from .sources import Request, local_copy
from .splits import STRATIFIED

URL = "https://scholar.cu.edu.eg/Dataset_BUSI.zip"
FOLDER = "Dataset_BUSI_with_GT"
CLASSES = ("normal", "benign", "malignant")
PUBLISHED = {"all": (133, 437, 210)}
UNPACKED_BYTES = 266_000_000  # the unpacked Dataset_BUSI_with_GT (images and masks)
LAYOUT = f"{FOLDER}/{{{','.join(CLASSES)}}}/*.png (the folder, its parent, or Dataset_BUSI.zip)"
HINT = ("BUSI is also mirrored on Kaggle ('Breast Ultrasound Images Dataset', "
        f"aryashah2k/breast-ultrasound-images-dataset); give its {FOLDER} folder to {local_copy('busi')}.")


def is_mask(path: Path) -> bool:
    """Whether ``path`` is one of BUSI's segmentation masks (``* (12)_mask.png``, ``*_mask_1.png``)."""
    return "_mask" in path.stem


def find_layout(folder: Path) -> Path | None:
    """The folder holding the class folders: ``folder`` itself or ``folder/Dataset_BUSI_with_GT``."""
    return next((d for d in (folder, folder / FOLDER) if all((d / c).is_dir() for c in CLASSES)), None)


def load_busi(request: Request, expected: dict[str, tuple[int, ...]] | None = PUBLISHED) -> Source:
    """Read BUSI from the user's copy or the raw folder (fetching and unpacking the zip when it is
    missing); ``expected`` are the per-class image counts to verify (None: do not check)."""
    if request.source is not None:
        data = request.user_layout("busi", find_layout, FOLDER, LAYOUT, UNPACKED_BYTES)
    else:
        data = find_layout(request.raw)
        if data is None:
            hint = f"Or give the unpacked folder to {local_copy('busi')}. {HINT}"
            archive = request.fetch(URL, request.raw / "Dataset_BUSI.zip", hint=hint)
            data = extract_layout(archive, request.raw, FOLDER, find_layout, hint, expected_bytes=UNPACKED_BYTES)
            if data is None:
                raise DatasetUnavailableError(f"busi: {archive} is not in the authors' layout {LAYOUT}")
    source = Source({"all": scan([data / c for c in CLASSES], exclude=is_mask)}, CLASSES, data,
                    info={"url": URL, "masks": "files with '_mask' in their name are skipped"})
    source.checksum = check_counts("busi", split_counts(source), expected, data, request.accept_checksum_mismatch)
    return source


register(DatasetSpec(
    name="busi", modality="breast ultrasound", num_classes=3, class_names=CLASSES,
    splits=f"no official split: {STRATIFIED}",
    source=f"the authors' {URL} (automatic; or --from the zip/folder, e.g. the Kaggle mirror); no published checksum",
    status="confirmed", loader=load_busi,
))
