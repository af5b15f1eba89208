"""COVID-CT (Yang et al. 2020, arXiv 2003.13865; github.com/UCSD-AI4H/COVID-CT), a dataset of
the paper: 349 COVID and 397 non-COVID chest CT slices, with the authors' split files.

The authors' repository layout::

    Images-processed/CT_COVID/*.png            (or the zip Images-processed/CT_COVID.zip)
    Images-processed/CT_NonCOVID/*.{png,jpg}   (or Images-processed/CT_NonCOVID.zip)
    Data-split/COVID/{train,val,test}CT_COVID.txt          one file name per line
    Data-split/NonCOVID/{train,val,test}CT_NonCOVID.txt

``--from`` takes a checkout of the repository (or its GitHub zip); image zips in it are
extracted into the raw folder. Without it, missing parts are fetched from the repository into
the raw folder. The authors publish no checksums, so the zips are checked by their CRCs, the
images by the published counts, and the md5 of every file read is recorded.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .base import SPLITS, RawSplit, Source, check_counts
from .download import extract_zip
from .errors import DatasetUnavailableError
from .folder import read_list, require_files, scan
from .registry import DatasetSpec, register
from .sources import Request, local_copy

REPO = "https://raw.githubusercontent.com/UCSD-AI4H/COVID-CT/master"
CLASSES = ("COVID", "NonCOVID")  # label order of the authors' own data loader
FOLDERS = ("CT_COVID", "CT_NonCOVID")
IMAGES, LISTS = "Images-processed", "Data-split"
PUBLISHED = {"images": (349, 397)}
UNPACKED_BYTES = {"CT_COVID": 50_200_000, "CT_NonCOVID": 47_200_000}  # each image zip, unpacked
HINT = f"COVID-CT is the GitHub repository UCSD-AI4H/COVID-CT: clone or download it and give its folder to {local_copy('covid_ct')}."


def split_list(cls: str, split: str) -> str:
    """Path of the authors' split file for class ``cls`` ("COVID"/"NonCOVID"), relative to the layout."""
    return f"{LISTS}/{cls}/{split}CT_{cls}.txt"


def find_layout(folder: Path) -> Path | None:
    """``folder`` if it holds ``Images-processed/`` and ``Data-split/`` (or its only sub-folder does)."""
    candidates = [folder, *(d for d in folder.iterdir() if d.is_dir())] if folder.is_dir() else []
    return next((d for d in candidates if (d / IMAGES).is_dir() and (d / LISTS).is_dir()), None)


def fetch_missing(raw: Path, request: Request) -> None:
    """Download and unpack whatever part of the layout is not under ``raw`` yet."""
    images = raw / IMAGES
    for folder in FOLDERS:
        if not (images / folder).is_dir():
            archive = request.fetch(f"{REPO}/{IMAGES}/{folder}.zip", images / f"{folder}.zip", hint=HINT)
            extract_zip(archive, images, folder, hint=HINT, expected_bytes=UNPACKED_BYTES[folder])
    for cls in CLASSES:
        for split in SPLITS:
            request.fetch(f"{REPO}/{split_list(cls, split)}", raw / split_list(cls, split), hint=HINT)


def materialize(layout: Path, raw: Path) -> Path:
    """The layout to read: the user's ``layout`` itself when its images are unpacked, else a copy
    in ``raw`` with its image zips extracted and its split lists copied (the user's files are
    only read)."""
    if all((layout / IMAGES / f).is_dir() for f in FOLDERS):
        return layout
    for folder in FOLDERS:
        unpacked, archive = layout / IMAGES / folder, layout / IMAGES / f"{folder}.zip"
        if unpacked.is_dir():
            shutil.copytree(unpacked, raw / IMAGES / folder, dirs_exist_ok=True)
        elif archive.is_file():
            extract_zip(archive, raw / IMAGES, folder, hint=HINT, downloaded=False,
                        expected_bytes=UNPACKED_BYTES[folder])
        else:
            raise DatasetUnavailableError(f"covid_ct: neither {unpacked} nor {archive} exists. {HINT}")
    shutil.copytree(layout / LISTS, raw / LISTS, dirs_exist_ok=True)
    return raw


def load_covid_ct(request: Request, expected: dict[str, tuple[int, ...]] | None = PUBLISHED) -> Source:
    """Read COVID-CT with its official splits from the user's copy or the raw folder (fetching
    missing parts); ``expected`` are the per-class image counts to verify (None: do not check)."""
    if request.source is not None:
        layout = materialize(request.user_layout("covid_ct", find_layout, "COVID-CT", f"{IMAGES}/ and {LISTS}/"),
                             request.raw)
    else:
        fetch_missing(request.raw, request)
        layout = request.raw
    return read_layout(layout, expected, request.accept_checksum_mismatch)


def read_layout(layout: Path, expected: dict[str, tuple[int, ...]] | None = PUBLISHED, accept: bool = False) -> Source:
    """The official splits of the COVID-CT layout at ``layout`` (counts checked as in :func:`check_counts`)."""
    folders = [layout / IMAGES / f for f in FOLDERS]
    checksum = check_counts("covid_ct", {"images": [len(scan([f]).labels) for f in folders]}, expected, layout, accept)
    splits, lists = {}, []
    for split in SPLITS:
        files, labels = [], []
        for label, (cls, folder) in enumerate(zip(CLASSES, folders, strict=True)):
            lists.append(layout / split_list(cls, split))
            names = read_list(lists[-1])
            files += [folder / n for n in names]
            labels += [label] * len(names)
        require_files("covid_ct", files, f"{layout / LISTS} ({split})")
        splits[split] = RawSplit(files, labels)
    return Source(splits, CLASSES, layout, info={"repository": REPO, "verified": "zip CRCs and image counts"},
                  checksum=checksum, index_files=tuple(lists), inputs=(layout / IMAGES, layout / LISTS))


register(DatasetSpec(
    name="covid_ct", modality="chest CT", num_classes=2, class_names=CLASSES,
    splits="official train/val/test split files (Data-split/)",
    source=f"UCSD-AI4H/COVID-CT on GitHub, automatic download ({REPO}) or --from a checkout; no published checksums",
    status="confirmed", loader=load_covid_ct,
))
