"""Chaoyang (Zhu et al., IEEE TMI 2021, "Hard Sample Aware Noise Robust Learning"), a dataset of
the paper: 512 px colon histopathology patches, 4 classes, official train (4,021) / test (2,139).

A manual download (the authors share it through their project page). Layout under
``<root>/chaoyang/raw/`` (the authors' ``chaoyang-data`` folder, or its content)::

    train.json, test.json   lists of {"name": "train/xxx.jpg", "label": 0..3}, names relative to raw
    train/*.jpg, test/*.jpg

Labels: 0 normal, 1 serrated, 2 adenocarcinoma, 3 adenoma. Val is carved out of train.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import RawSplit, Source, check_counts, split_counts
from .download import DatasetUnavailableError
from .folder import require_files
from .registry import DatasetSpec, register
from .splits import VAL_FRACTION

CLASSES = ("normal", "serrated", "adenocarcinoma", "adenoma")
PUBLISHED = {"train": (1111, 842, 1404, 664), "test": (705, 321, 840, 273)}
PAGE = "https://bupt-ai-cz.github.io/HSA-NRL/"


def instructions(raw: Path) -> str:
    """How to place the Chaoyang files by hand."""
    return (f"Chaoyang must be downloaded by hand: follow the dataset link on the authors' project page "
            f"{PAGE} (github.com/bupt-ai-cz/HSA-NRL), unpack it, and put the content of its "
            f"'chaoyang-data' folder into\n    {raw}\nso that these exist: {raw / 'train.json'}, "
            f"{raw / 'test.json'}, {raw / 'train'}/*.jpg and {raw / 'test'}/*.jpg.")


def load_chaoyang(raw: Path, expected: dict[str, tuple[int, ...]] | None = PUBLISHED) -> Source:
    """Read the Chaoyang layout at ``raw`` (or at ``raw/chaoyang-data``); ``expected`` are the
    published per-class counts of train and test (None: do not check)."""
    if (raw / "chaoyang-data" / "train.json").is_file():
        raw = raw / "chaoyang-data"
    missing = [raw / f for f in ("train.json", "test.json") if not (raw / f).is_file()]
    if missing:
        raise DatasetUnavailableError(f"chaoyang: {', '.join(map(str, missing))} not found.\n{instructions(raw)}")
    splits = {}
    for split in ("train", "test"):
        entries = json.loads((raw / f"{split}.json").read_text())
        files = [raw / e["name"] for e in entries]
        require_files("chaoyang", files, str(raw / f"{split}.json"))
        splits[split] = RawSplit(files, [int(e["label"]) for e in entries])
    source = Source(splits, CLASSES, raw, info={"page": PAGE})
    check_counts("chaoyang", split_counts(source), expected, raw)
    return source


register(DatasetSpec(
    name="chaoyang", modality="colon histopathology", num_classes=4, class_names=CLASSES,
    splits=f"official train/test (train.json/test.json); val = seeded stratified {VAL_FRACTION:.0%} of train",
    source=f"manual download via the authors' project page {PAGE}; place it in <root>/chaoyang/raw/",
    status="confirmed", loader=lambda root, size: load_chaoyang(root / "chaoyang" / "raw"),
))
