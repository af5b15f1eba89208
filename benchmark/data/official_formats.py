"""Tiny files in the exact formats the real datasets are published in, written into one *mirror*
folder, so an end-to-end test can run every real loader without network or real data:

    <mirror>/CT_COVID.zip, CT_NonCOVID.zip      COVID-CT's image zips (a wrapping folder + __MACOSX/)
    <mirror>/{train,val,test}CT_{COVID,NonCOVID}.txt   its split lists, by their official names
    <mirror>/Dataset_BUSI.zip                   BUSI (Dataset_BUSI_with_GT/<class>/, with *_mask.png)
    <mirror>/<flag>.npz                         MedMNIST+ files (28 px naming), for each flag asked
    <mirror>/chaoyang-data/                     Chaoyang (train.json, test.json, train/, test/)
    <mirror>/brain-tumor-mri/                   brain MRI (Training/<class>/, Testing/<class>/)

COVID-CT, BUSI and MedMNIST are then fetched through the mirror (``mirror=`` or
``$SHPEFT_DATA_MIRROR``); Chaoyang and brain MRI are manual downloads, so they are passed as
sources (``prepare(..., source=...)``; :func:`write_official_mirror` returns these paths).
The files are tiny, so they differ from the published counts and MedMNIST md5s: preparing them
needs ``accept_checksum_mismatch=True``, and meta.json records ``user-supplied``.
"""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import brain_mri, busi, chaoyang, covid_ct
from .base import SPLITS
from .download import official_name
from .medmnist import class_names
from .synthetic import WRITERS, SynthConfig, make_images, make_splits, write_medmnist

TINY = SynthConfig(n_train=12, n_val=4, n_test=4, size=16)


def _encoded(image: np.ndarray, suffix: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG" if suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return buffer.getvalue()


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return path


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_encoded(image, path.suffix))


def write_covid_ct(mirror: Path, cfg: SynthConfig) -> None:
    """CT_COVID.zip, CT_NonCOVID.zip and the six split lists, flat, by their official names."""
    members: dict[str, dict[str, bytes]] = {f: {} for f in covid_ct.FOLDERS}
    for split, (images, labels) in make_splits(replace(cfg, num_classes=2)).items():
        lists: dict[str, list[str]] = {c: [] for c in covid_ct.CLASSES}
        for i, (image, y) in enumerate(zip(images, labels, strict=True)):
            name = f"{split}-{i:03d}" + (".jpg" if y == 1 and i % 2 else ".png")
            folder = covid_ct.FOLDERS[y]
            members[folder][f"{folder}/{name}"] = _encoded(image, name)
            members[folder][f"__MACOSX/{folder}/._{name}"] = b"\0\5\26\7"  # AppleDouble: not data
            lists[covid_ct.CLASSES[y]].append(name)
        for cls, names in lists.items():
            (mirror / official_name(covid_ct.split_list(cls, split))).write_text("\n".join(names) + "\n")
    for folder, files in members.items():
        _write_zip(mirror / f"{folder}.zip", files)


def write_busi(mirror: Path, cfg: SynthConfig) -> None:
    """Dataset_BUSI.zip: Dataset_BUSI_with_GT/<class>/<class> (i).png and its mask."""
    images, labels = make_images(cfg.n_train + cfg.n_val + cfg.n_test, 3, cfg.size, cfg.seed, cfg.channels)
    members = {}
    for i, (image, y) in enumerate(zip(images, labels, strict=True), start=1):
        stem = f"{busi.FOLDER}/{busi.CLASSES[y]}/{busi.CLASSES[y]} ({i})"
        members[f"{stem}.png"] = _encoded(image, ".png")
        members[f"{stem}_mask.png"] = _encoded((image > 128).astype(np.uint8) * 255, ".png")
    _write_zip(mirror / official_name(busi.URL), members)


def write_chaoyang(out: Path, cfg: SynthConfig) -> Path:
    """The ``chaoyang-data`` folder: train.json/test.json ({"name", "label"}) and the JPEGs."""
    splits = make_splits(replace(cfg, num_classes=len(chaoyang.CLASSES)))
    for split, part in (("train", "train"), ("test", "test")):
        images, labels = splits[part]
        entries = [{"name": f"{split}/{i:04d}-IMG{y}.JPG", "label": int(y)} for i, y in enumerate(labels)]
        for image, entry in zip(images, entries, strict=True):
            _save(image, out / entry["name"])
        (out / f"{split}.json").write_text(json.dumps(entries))
    return out


def write_brain_mri(out: Path, cfg: SynthConfig) -> Path:
    """Kaggle's layout: Training/<class>/Tr-*.jpg and Testing/<class>/Te-*.jpg."""
    splits = make_splits(replace(cfg, num_classes=len(brain_mri.CLASSES)))
    for split, part in brain_mri.PARTS.items():
        images, labels = splits[split]
        for i, (image, y) in enumerate(zip(images, labels, strict=True)):
            _save(image, out / part / brain_mri.CLASSES[y] / f"{part[:2]}-{i:04d}.jpg")
    return out


def write_official_mirror(mirror: Path, cfg: SynthConfig = TINY,
                          medmnist_flags: Sequence[str] = ("breastmnist",)) -> dict[str, Path]:
    """Write every real dataset's format into ``mirror`` (see the module docstring); returns the
    sources of the manual datasets, ``{"chaoyang": ..., "brain_mri": ...}``."""
    mirror = Path(mirror)
    mirror.mkdir(parents=True, exist_ok=True)
    write_covid_ct(mirror, cfg)
    write_busi(mirror, cfg)
    for flag in medmnist_flags:  # 28 px: the file name medmnist's INFO serves (<flag>.npz)
        write_medmnist(mirror, replace(cfg, size=28, num_classes=len(class_names(flag))), flag=flag)
    return {"chaoyang": write_chaoyang(mirror / chaoyang.FOLDER, cfg),
            "brain_mri": write_brain_mri(mirror / "brain-tumor-mri", cfg)}


WRITERS["official-mirror"] = write_official_mirror
