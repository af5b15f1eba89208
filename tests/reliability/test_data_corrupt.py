"""Corrupt and truncated files (zip, npz, image, cached .pt): a named error before any cache is
written (or, for the cache itself, a named rebuild), and the user's file byte-identical."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import benchmark.data as data
from benchmark import paths
from benchmark.data.synthetic import SynthConfig, write_medmnist

from .helpers import SIZE, prepare_busi, same_splits, splits_of, temporaries, tree_state


def _truncate(path, keep: float = 0.6):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def test_a_damaged_download_is_quarantined_and_the_mirror_untouched(busi_mirror, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(busi_mirror, mirror)
    _truncate(mirror / "Dataset_BUSI.zip")
    before = tree_state(mirror)
    with pytest.warns(UserWarning, match="not a valid zip"), pytest.raises(data.CorruptFileError, match="damaged"):
        prepare_busi(tmp_path / "data", mirror)
    assert tree_state(mirror) == before
    raw = paths.raw_dir(tmp_path / "data", "busi")
    assert [p.name.split(".corrupt-")[0] for p in raw.iterdir()] == ["Dataset_BUSI.zip"]  # moved aside, unique name
    assert not paths.cache_dir(tmp_path / "data", "busi", SIZE).exists() and temporaries(tmp_path / "data") == []


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_users_damaged_zip_is_refused_and_left_alone(busi_mirror, tmp_path, damage):
    archive = tmp_path / "user" / "Dataset_BUSI.zip"
    archive.parent.mkdir()
    shutil.copy(busi_mirror / "Dataset_BUSI.zip", archive)
    if damage == "truncated":
        _truncate(archive)
    else:  # a zip whose member bytes are damaged: the CRC test catches it
        payload = bytearray(archive.read_bytes())
        payload[200:260] = bytes(60)
        archive.write_bytes(bytes(payload))
    before = tree_state(archive.parent)
    with pytest.raises(data.DataError):
        data.prepare("busi", tmp_path / "data", SIZE, source=archive, accept_checksum_mismatch=True)
    assert tree_state(archive.parent) == before  # not moved, not renamed, not modified
    assert temporaries(tmp_path / "data") == []


@pytest.mark.parametrize("damage", ["truncated", "not-npz", "missing-key"])
def test_a_bad_npz_is_refused_before_decoding(tmp_path, damage):
    path = write_medmnist(tmp_path / "user", SynthConfig(num_classes=2, size=28, channels=1), flag="breastmnist")
    if damage == "truncated":
        _truncate(path)
    elif damage == "not-npz":
        path.write_bytes(b"not a zip at all" * 10)
    else:
        np.savez(path.with_suffix(""), train_images=np.zeros((2, 28, 28), np.uint8))
    before = tree_state(path.parent)
    with pytest.raises(data.CorruptFileError, match=str(path)):
        data.prepare("breastmnist", tmp_path / "data", 28, source=path, accept_checksum_mismatch=True)
    assert tree_state(path.parent) == before
    assert not paths.cache_dir(tmp_path / "data", "breastmnist", 28).exists()


def test_a_corrupt_image_is_named_and_no_cache_is_left(tmp_path, write_images):
    folder = tmp_path / "scans"
    write_images([folder / c / f"{i}.png" for c in ("a", "b") for i in range(6)])
    (folder / "b" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    before = tree_state(folder)
    with pytest.raises(data.CorruptFileError, match="3.png"):
        data.prepare(f"folder:{folder}", tmp_path / "data", SIZE)
    assert tree_state(folder) == before
    assert not paths.ready_marker(tmp_path / "data", f"folder:{folder}", SIZE).exists()
    assert temporaries(tmp_path / "data") == []


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong-length"])
def test_a_corrupt_cached_pt_is_named_and_rebuilt(busi_mirror, tmp_path, damage):
    prepare_busi(tmp_path, busi_mirror)
    reference = splits_of(tmp_path, "busi")
    train = paths.cache_dir(tmp_path, "busi", SIZE) / "train.pt"
    if damage == "truncated":
        _truncate(train)
    elif damage == "garbage":
        train.write_bytes(b"\0" * 1000)
    else:
        shutil.copy(train.with_name("test.pt"), train)
    with pytest.warns(UserWarning, match=f"{train}.*rebuilding"):
        data.load("busi", tmp_path, SIZE, accept_checksum_mismatch=True)
    assert same_splits(splits_of(tmp_path, "busi"), reference)
