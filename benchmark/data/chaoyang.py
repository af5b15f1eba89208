"""Chaoyang (Zhu et al., IEEE TMI 2021, "Hard Sample Aware Noise Robust Learning"), a dataset of
the paper: 512 px colon histopathology patches, 4 classes, official train (4,021) / test (2,139).

A manual download (the authors share it through their project page): pass the archive or the
folder with ``--from``, or put it in the raw folder. The authors' ``chaoyang-data`` layout::

    train.json, test.json   lists of {"name": "train/xxx.jpg", "label": 0..3}, names relative to it
    train/*.jpg, test/*.jpg

Labels: 0 normal, 1 serrated, 2 adenocarcinoma, 3 adenoma. Val is carved out of train.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import RawSplit, Source, check_counts, split_counts
from .errors import DatasetUnavailableError
from .folder import require_files
from .registry import DatasetSpec, register
from .sources import Request, local_copy
from .splits import VAL_FRACTION

CLASSES = ("normal", "serrated", "adenocarcinoma", "adenoma")
PUBLISHED = {"train": (1111, 842, 1404, 664), "test": (705, 321, 840, 273)}
PAGE = "https://bupt-ai-cz.github.io/HSA-NRL/"
FOLDER = "chaoyang-data"
LAYOUT = f"train.json, test.json, train/*.jpg, test/*.jpg (in the folder or in its {FOLDER}/)"


def instructions(raw: Path) -> str:
    """How to get the Chaoyang files."""
    return (f"Chaoyang must be downloaded by hand: follow the dataset link on the authors' project page "
            f"{PAGE} (github.com/bupt-ai-cz/HSA-NRL), then give the archive or its unpacked '{FOLDER}' "
            f"folder to {local_copy('chaoyang')}, or put the content of '{FOLDER}' into\n    {raw}\nso that these exist: "
            f"{raw / 'train.json'}, {raw / 'test.json'}, {raw / 'train'}/*.jpg and {raw / 'test'}/*.jpg.")


def find_layout(folder: Path) -> Path | None:
    """``folder`` or ``folder/chaoyang-data``, whichever holds train.json and test.json."""
    return next((d for d in (folder, folder / FOLDER)
                 if (d / "train.json").is_file() and (d / "test.json").is_file()), None)


def load_chaoyang(request: Request, expected: dict[str, tuple[int, ...]] | None = PUBLISHED) -> Source:
    """Read Chaoyang from the user's copy or the raw folder; ``expected`` are the published
    per-class counts of train and test (None: do not check)."""
    if request.source is not None:
        data = request.user_layout("chaoyang", find_layout, FOLDER, LAYOUT)
    elif (data := find_layout(request.raw)) is None:
        raise DatasetUnavailableError(f"chaoyang: {request.raw / 'train.json'} not found.\n"
                                      f"{instructions(request.raw)}")
    splits = {}
    for split in ("train", "test"):
        entries = json.loads((data / f"{split}.json").read_text())
        files = [data / e["name"] for e in entries]
        require_files("chaoyang", files, str(data / f"{split}.json"))
        splits[split] = RawSplit(files, [int(e["label"]) for e in entries])
    source = Source(splits, CLASSES, data, info={"page": PAGE},
                    index_files=(data / "train.json", data / "test.json"))
    source.checksum = check_counts("chaoyang", split_counts(source), expected, data, request.accept_checksum_mismatch)
    return source


register(DatasetSpec(
    name="chaoyang", modality="colon histopathology", num_classes=4, class_names=CLASSES,
    splits=f"official train/test (train.json/test.json); val = seeded stratified {VAL_FRACTION:.0%} of train",
    source=f"manual download via the authors' project page {PAGE}; prepare chaoyang --from <archive or folder>",
    status="confirmed", loader=load_chaoyang,
))
