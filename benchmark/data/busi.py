"""BUSI, Breast Ultrasound Images (Al-Dhabyani et al., Data in Brief 2020), a dataset of the
paper: 780 images, 133 normal / 437 benign / 210 malignant.

Layout under ``<root>/busi/raw/``::

    Dataset_BUSI_with_GT/{normal,benign,malignant}/*.png

where files whose name contains ``_mask`` are segmentation masks, not samples. The authors'
``Dataset_BUSI.zip`` is fetched when the folder is missing (or read if placed by hand); no
checksum is published, so it is checked by its CRCs and the image counts. There is no official
split: a seeded stratified 70/10/20 split is made and recorded in meta.json.
"""
from __future__ import annotations

from pathlib import Path

from .base import Source, check_counts, split_counts
from .download import DatasetUnavailableError, extract_zip, fetch
from .folder import scan
from .registry import DatasetSpec, register
from .splits import STRATIFIED

URL = "https://scholar.cu.edu.eg/Dataset_BUSI.zip"
FOLDER = "Dataset_BUSI_with_GT"
CLASSES = ("normal", "benign", "malignant")
PUBLISHED = {"all": (133, 437, 210)}
HINT = ("BUSI is also mirrored on Kaggle ('Breast Ultrasound Images Dataset', "
        f"aryashah2k/breast-ultrasound-images-dataset); its {FOLDER} folder can be placed directly.")


def is_mask(path: Path) -> bool:
    """Whether ``path`` is one of BUSI's segmentation masks (``* (12)_mask.png``, ``*_mask_1.png``)."""
    return "_mask" in path.stem


def load_busi(raw: Path, expected: dict[str, tuple[int, ...]] | None = PUBLISHED) -> Source:
    """Read the BUSI layout at ``raw`` (fetching and unpacking the zip when the folder is missing);
    ``expected`` are the per-class image counts to verify (None: do not check)."""
    data = raw / FOLDER
    if not data.is_dir():
        hint = f"Or place the unpacked folder at {data}. {HINT}"
        extract_zip(fetch(URL, raw / "Dataset_BUSI.zip", hint=hint), raw, FOLDER, hint=hint)
    missing = [str(data / c) for c in CLASSES if not (data / c).is_dir()]
    if missing:
        raise DatasetUnavailableError(f"busi: class folders {missing} not found. {HINT}")
    source = Source({"all": scan([data / c for c in CLASSES], exclude=is_mask)}, CLASSES, raw,
                    info={"url": URL, "masks": "files with '_mask' in their name are skipped"})
    check_counts("busi", split_counts(source), expected, raw)
    return source


register(DatasetSpec(
    name="busi", modality="breast ultrasound", num_classes=3, class_names=CLASSES,
    splits=f"no official split: {STRATIFIED}",
    source=f"the authors' {URL} (automatic; manual if it fails: Kaggle mirror); no published checksum",
    status="confirmed", loader=lambda root, size: load_busi(root / "busi" / "raw"),
))
