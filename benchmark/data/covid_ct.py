"""COVID-CT (Yang et al. 2020, arXiv 2003.13865; github.com/UCSD-AI4H/COVID-CT), a dataset of
the paper: 349 COVID and 397 non-COVID chest CT slices, with the authors' split files.

Layout under ``<root>/covid_ct/raw/``, as in the authors' repository::

    Images-processed/CT_COVID/*.png            (from Images-processed/CT_COVID.zip)
    Images-processed/CT_NonCOVID/*.{png,jpg}   (from Images-processed/CT_NonCOVID.zip)
    Data-split/COVID/{train,val,test}CT_COVID.txt          one file name per line
    Data-split/NonCOVID/{train,val,test}CT_NonCOVID.txt

Missing parts are fetched from the repository. The authors publish no checksums, so the zips
are checked by their CRCs (zip integrity test) and the images by the published counts.
"""
from __future__ import annotations

from pathlib import Path

from .base import SPLITS, RawSplit, Source, check_counts
from .download import extract_zip, fetch
from .folder import read_list, require_files, scan
from .registry import DatasetSpec, register

REPO = "https://raw.githubusercontent.com/UCSD-AI4H/COVID-CT/master"
CLASSES = ("COVID", "NonCOVID")  # label order of the authors' own data loader
FOLDERS = ("CT_COVID", "CT_NonCOVID")
PUBLISHED = {"images": (349, 397)}
HINT = ("COVID-CT is the GitHub repository UCSD-AI4H/COVID-CT: clone or download it and copy its "
        "Images-processed/ (with the two zips unpacked) and Data-split/ folders into the raw folder.")


def split_list(cls: str, split: str) -> str:
    """Path of the authors' split file for class ``cls`` ("COVID"/"NonCOVID"), relative to raw."""
    return f"Data-split/{cls}/{split}CT_{cls}.txt"


def fetch_missing(raw: Path) -> None:
    """Download and unpack whatever part of the layout is not under ``raw`` yet."""
    images = raw / "Images-processed"
    for folder in FOLDERS:
        if not (images / folder).is_dir():
            archive = fetch(f"{REPO}/Images-processed/{folder}.zip", images / f"{folder}.zip", hint=HINT)
            extract_zip(archive, images, folder, hint=HINT)
    for cls in CLASSES:
        for split in SPLITS:
            fetch(f"{REPO}/{split_list(cls, split)}", raw / split_list(cls, split), hint=HINT)


def load_covid_ct(raw: Path, expected: dict[str, tuple[int, ...]] | None = PUBLISHED) -> Source:
    """Read the COVID-CT layout at ``raw`` with its official splits (fetching missing parts);
    ``expected`` are the per-class image counts to verify (None: do not check)."""
    fetch_missing(raw)
    folders = [raw / "Images-processed" / f for f in FOLDERS]
    check_counts("covid_ct", {"images": [len(scan([f]).labels) for f in folders]}, expected, raw)
    splits = {}
    for split in SPLITS:
        files, labels = [], []
        for label, (cls, folder) in enumerate(zip(CLASSES, folders, strict=True)):
            names = read_list(raw / split_list(cls, split))
            files += [folder / n for n in names]
            labels += [label] * len(names)
        require_files("covid_ct", files, f"{raw}/Data-split ({split})")
        splits[split] = RawSplit(files, labels)
    return Source(splits, CLASSES, raw, info={"repository": REPO, "verified": "zip CRCs and image counts"})


register(DatasetSpec(
    name="covid_ct", modality="chest CT", num_classes=2, class_names=CLASSES,
    splits="official train/val/test split files (Data-split/)",
    source=f"UCSD-AI4H/COVID-CT on GitHub, automatic download ({REPO}); no published checksums",
    status="confirmed", loader=lambda root, size: load_covid_ct(root / "covid_ct" / "raw"),
))
