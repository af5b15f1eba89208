"""Each real loader, on tiny files written here in its authors' on-disk format."""
import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import benchmark.data as data
from benchmark.data import DatasetUnavailableError, busi, chaoyang, covid_ct
from benchmark.data.registry import DatasetSpec
from benchmark.data.sources import Request

SIZE = 16


def _register(name, loader, class_names):
    data.register(DatasetSpec(name=name, modality="test", num_classes=len(class_names), class_names=class_names,
                              splits="", source="test files", status="user", loader=loader))


def _write_npz(path, rng, n, side, channels, classes=2):
    shape = (side, side) if channels == 1 else (side, side, 3)
    arrays = {}
    for split, k in zip(data.SPLITS, n):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % classes).astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.mark.parametrize("size, file_size", [(28, 28), (48, 64)])
def test_medmnist_npz(monkeypatch, tmp_path, size, file_size):
    path = tmp_path / "breastmnist" / "raw" / ("breastmnist.npz" if file_size == 28 else f"breastmnist_{file_size}.npz")
    arrays = _write_npz(path, np.random.default_rng(0), (6, 2, 4), file_size, channels=1)
    key = "MD5" if file_size == 28 else f"MD5_{file_size}"
    monkeypatch.setitem(data.medmnist.INFO["breastmnist"], key, hashlib.md5(path.read_bytes()).hexdigest())
    splits = data.load("breastmnist", tmp_path, size=size)
    train = splits["train"]
    assert train.images.dtype == torch.uint8 and train.images.shape == (6, 3, size, size)
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # grayscale repeated over RGB
    if size == file_size:
        assert torch.equal(train.images[:, 0], torch.from_numpy(arrays["train_images"]))
    assert [len(splits[s].labels) for s in data.SPLITS] == [6, 2, 4]
    assert data.meta("breastmnist", tmp_path, size)["splits"]["policy"] == "official train/val/test"


def test_medmnist_rgb_npz_keeps_channels(monkeypatch, tmp_path):
    path = tmp_path / "pathmnist" / "raw" / "pathmnist.npz"
    arrays = _write_npz(path, np.random.default_rng(1), (9, 2, 2), 28, channels=3, classes=9)
    monkeypatch.setitem(data.medmnist.INFO["pathmnist"], "MD5", hashlib.md5(path.read_bytes()).hexdigest())
    train = data.load("pathmnist", tmp_path, size=28)["train"]
    assert torch.equal(train.images, torch.from_numpy(arrays["train_images"]).permute(0, 3, 1, 2))


def test_folder_without_split_files(tmp_path, data_images, data_registry):
    raw = tmp_path / "mydata" / "raw"
    data_images([raw / c / f"{i}.png" for c in ("tumour", "healthy") for i in range(10)])
    data_images([raw / "healthy" / "nested" / "x.jpg"])
    (raw / "healthy" / "notes.txt").write_text("not an image")
    data.register_folder("mydata")
    splits = data.load("mydata", tmp_path, size=SIZE)
    info = data.meta("mydata", tmp_path, SIZE)
    assert info["class_names"] == ["healthy", "tumour"]
    assert [info["counts"][s]["per_class"] for s in data.SPLITS] == [[8, 7], [1, 1], [2, 2]]
    assert info["splits"]["seed"] == 0 and info["splits"]["fractions"]["train"] == 0.7
    assert "healthy/nested/x.jpg" in sum(info["files"].values(), [])
    assert splits["test"].images.shape == (4, 3, SIZE, SIZE)


def test_folder_with_split_files_and_folder_prefix(tmp_path, data_images, data_registry):
    raw = tmp_path / "elsewhere"
    files = data_images([raw / c / f"{i}.jpg" for c in ("a", "b") for i in range(6)])
    names = [p.relative_to(raw).as_posix() for p in files]
    (raw / "splits").mkdir()
    (raw / "splits" / "train.txt").write_text("\n".join(names[:4] + names[6:10]) + "\n\n")
    (raw / "splits" / "test.txt").write_text("\n".join(names[4:6] + names[10:]))
    info = data.meta(f"folder:{raw}", tmp_path / "cache", SIZE)
    assert info["splits"]["policy"].startswith("official train/test")  # val carved out of train.txt
    assert sorted(info["files"]["test"]) == sorted(names[4:6] + names[10:])
    assert sorted(info["files"]["train"] + info["files"]["val"]) == sorted(names[:4] + names[6:10])
    (raw / "splits" / "val.txt").write_text("c/0.jpg\n")
    with pytest.raises(ValueError, match="not class folders"):
        data.folder.load_folder(raw)


def test_folder_missing_is_explained(tmp_path, data_registry):
    data.register_folder("absent", tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailableError, match="Expected layout"):
        data.prepare("absent", tmp_path)


def _covid_layout(raw, data_images, counts):
    """The UCSD-AI4H/COVID-CT layout; ``counts[cls]`` = images per split (train, val, test)."""
    for cls, folder in zip(covid_ct.CLASSES, covid_ct.FOLDERS):
        for split, n in zip(data.SPLITS, counts[cls]):
            names = [f"{cls}-{split}-{i}" + (".jpg" if cls == "NonCOVID" and i % 2 else ".png") for i in range(n)]
            data_images([raw / "Images-processed" / folder / name for name in names], size=(8, 6))
            path = raw / covid_ct.split_list(cls, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(names) + "\n")


def test_covid_ct_official_layout_and_counts(tmp_path, data_images):
    raw = tmp_path / "covid_ct" / "raw"
    _covid_layout(raw, data_images, {"COVID": (191, 60, 98), "NonCOVID": (234, 58, 105)})  # 349 / 397
    info = data.meta("covid_ct", tmp_path, size=8)
    assert info["class_names"] == ["COVID", "NonCOVID"]
    assert [info["counts"][s]["per_class"] for s in data.SPLITS] == [[191, 234], [60, 58], [98, 105]]
    assert info["splits"]["policy"] == "official train/val/test"
    (raw / "Images-processed" / "CT_COVID" / "COVID-test-0.png").unlink()
    with pytest.raises(DatasetUnavailableError, match="published"):
        covid_ct.read_layout(raw)
    with pytest.raises(DatasetUnavailableError, match="missing"):
        covid_ct.read_layout(raw, expected=None)


def _chaoyang_layout(raw, data_images, per_class):
    for split, n in (("train", per_class), ("test", 2)):
        entries = [{"name": f"{split}/{c}-{i}.JPG", "label": c} for c in range(4) for i in range(n)]
        data_images([raw / e["name"] for e in entries], size=(8, 8))
        (raw / f"{split}.json").write_text(json.dumps(entries))


def test_chaoyang_json_layout(tmp_path, data_images, data_registry):
    raw = tmp_path / "chaoyang" / "raw" / "chaoyang-data"  # the authors' folder, kept as is
    _chaoyang_layout(raw, data_images, per_class=10)
    _register("chaoyang-small", lambda request: chaoyang.load_chaoyang(replace(request, raw=raw.parent), expected=None),
              chaoyang.CLASSES)
    info = data.meta("chaoyang-small", tmp_path, SIZE)
    assert [info["counts"][s]["per_class"] for s in data.SPLITS] == [[9] * 4, [1] * 4, [2] * 4]
    assert info["splits"]["val_fraction"] == 0.1
    with pytest.raises(DatasetUnavailableError, match="published"):
        chaoyang.load_chaoyang(Request(raw, SIZE))  # not the published 4,021 / 2,139


def test_manual_datasets_say_where_to_put_what(tmp_path):
    with pytest.raises(DatasetUnavailableError) as err:
        data.prepare("chaoyang", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "chaoyang" / "raw" / "train.json") in message and chaoyang.PAGE in message
    with pytest.raises(DatasetUnavailableError, match="Training/ and Testing/"):
        data.prepare("brain_mri", tmp_path)


def test_busi_skips_masks_and_splits_stratified(tmp_path, data_images):
    root = tmp_path / "busi" / "raw" / busi.FOLDER
    for cls, n in zip(busi.CLASSES, busi.PUBLISHED["all"]):
        data_images([root / cls / f"{cls} ({i}).png" for i in range(1, n + 1)], size=(6, 6))
        data_images([root / cls / f"{cls} ({i})_mask.png" for i in range(1, n + 1)], size=(6, 6))
    data_images([root / "benign" / "benign (4)_mask_1.png"], size=(6, 6))
    info = data.meta("busi", tmp_path, size=8)
    assert [info["counts"][s]["total"] for s in data.SPLITS] == [546, 78, 156]
    assert [sum(info["counts"][s]["per_class"][c] for s in data.SPLITS) for c in range(3)] == [133, 437, 210]
    assert not any("_mask" in f for files in info["files"].values() for f in files)
    assert info["splits"]["policy"] == "seeded stratified split" and info["splits"]["seed"] == 0
    # The split is a function of the files and the seed only: a second copy splits identically.
    other = tmp_path / "copy"
    (other / "busi" / "raw").mkdir(parents=True)
    (other / "busi" / "raw" / busi.FOLDER).symlink_to(root)
    assert data.meta("busi", other, size=8)["files"] == info["files"]


def test_brain_mri_layout(tmp_path, data_images):
    raw = tmp_path / "brain_mri" / "raw"
    for part, n in (("Training", 5), ("Testing", 2)):
        for cls in ("glioma", "meningioma", "notumor", "pituitary"):
            data_images([raw / part / cls / f"Tr-{cls}_{i}.jpg" for i in range(n)], size=(8, 8))
    info = data.meta("brain_mri", tmp_path, SIZE)
    assert [info["counts"][s]["total"] for s in data.SPLITS] == [16, 4, 8]
