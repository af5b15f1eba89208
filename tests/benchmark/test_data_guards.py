"""Refusals of the data layer before any work: an image folder's split files (test leakage, lines
outside the folder or naming no class) and archives that would unpack to far more than their
dataset (zip bombs), with nothing left behind."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

import benchmark.data as data
from benchmark.data import download
from benchmark.data.errors import CorruptFileError, OversizedArchiveError, SplitFileError
from benchmark.data.folder import load_folder

SIZE = 8
MB = 1_000_000


def _folder(root: Path, data_images, splits: dict[str, list[str]]) -> Path:
    """Two classes of four images each under ``root``, and ``splits/<split>.txt`` with these lines."""
    data_images([root / c / f"{i}.png" for c in ("a", "b") for i in range(4)], size=(4, 4))
    (root / "splits").mkdir()
    for split, lines in splits.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


GOOD = {"train": ["a/0.png", "a/1.png", "b/0.png", "b/1.png"], "test": ["a/2.png", "b/2.png"]}


def test_an_image_in_train_and_test_is_refused_naming_it_and_both_files(tmp_path, data_images):
    root = _folder(tmp_path / "scans", data_images, {**GOOD, "test": ["a/2.png", "b/1.png", "./a/0.png"]})
    with pytest.raises(SplitFileError) as err:
        load_folder(root)
    message = str(err.value)
    assert "2 image(s)" in message and "'a/0.png'" in message and "'b/1.png'" in message
    assert str(root / "splits" / "train.txt") in message and str(root / "splits" / "test.txt") in message


@pytest.mark.parametrize("line", ["../outside.png", "a/../../outside.png", "/etc/passwd"])
def test_a_line_leading_outside_the_folder_is_refused_by_line(tmp_path, data_images, line):
    root = _folder(tmp_path / "scans", data_images, {**GOOD, "train": [*GOOD["train"], "", line]})
    (tmp_path / "outside.png").write_bytes((root / "a" / "0.png").read_bytes())  # would be readable
    with pytest.raises(SplitFileError, match=rf"train\.txt:6: '{line}' leads outside the dataset folder"):
        load_folder(root)


def test_a_line_naming_no_class_folder_is_a_data_error_naming_the_line(tmp_path, data_images):
    root = _folder(tmp_path / "scans", data_images, {**GOOD, "test": ["a/2.png", "c/2.png"]})
    with pytest.raises(SplitFileError, match=r"test\.txt:2: 'c/2\.png': first path components \['c'\] are not "
                                             r"class folders \['a', 'b'\]"):
        load_folder(root)


def test_good_split_files_are_read_with_equivalent_spellings(tmp_path, data_images):
    root = _folder(tmp_path / "scans", data_images, {**GOOD, "test": ["./a/2.png", "b//2.png"]})
    source = load_folder(root)
    assert source.splits["test"].images == [root / "a" / "2.png", root / "b" / "2.png"]
    assert source.splits["test"].labels.tolist() == [0, 1]


def test_a_bad_user_folder_creates_nothing_under_the_data_root(tmp_path, data_images):
    root = _folder(tmp_path / "scans", data_images, {**GOOD, "test": ["a/0.png", "b/2.png"]})
    with pytest.raises(SplitFileError):
        data.prepare(f"folder:{root}", tmp_path / "data", SIZE)
    with pytest.raises(data.DatasetUnavailableError, match="no image folder"):
        data.prepare(f"folder:{tmp_path / 'missing'}", tmp_path / "data", SIZE)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("size", [0, -4, 2.5, True])
def test_a_cache_size_below_one_pixel_is_refused_before_anything_is_written(tmp_path, size):
    with pytest.raises(ValueError, match=r"size: got .*; expected an integer >= 1"):
        data.prepare("synthetic-medmnist", tmp_path / "data", size)
    assert not (tmp_path / "data").exists()


# --- archives -------------------------------------------------------------------------------------------

def _zeros_zip(path: Path, megabytes: int, member: str = "Training/glioma/x.jpg") -> Path:
    """A deflated zip of one member of ``megabytes`` MB of zeros (about a thousandth of that on disk)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open(member, "w", force_zip64=True) as f:
        for _ in range(megabytes):
            f.write(bytes(MB))
    return path


def test_the_limit_is_a_multiple_of_the_archive_and_of_the_dataset(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(bytes(1 * MB))
    assert download.unpack_limit(archive) == download.UNPACK_RATIO * MB
    assert download.unpack_limit(archive, expected_bytes=2 * MB) == download.EXPECTED_MARGIN * 2 * MB
    archive.write_bytes(b"x")
    assert download.unpack_limit(archive) == download.UNPACK_FLOOR


def test_a_zip_bomb_is_refused_before_extraction_and_a_users_archive_is_untouched(tmp_path):
    archive = _zeros_zip(tmp_path / "bomb.zip", 20)
    before = archive.read_bytes()
    with pytest.raises(OversizedArchiveError, match=r"would unpack to 20\.0 MB, more than the 16\.0 MB allowed"):
        download.extract_zip(archive, tmp_path / "raw", "brain", downloaded=False)
    assert archive.read_bytes() == before and not (tmp_path / "raw").exists()


def test_a_downloaded_zip_bomb_is_moved_aside(tmp_path):
    archive = _zeros_zip(tmp_path / "bomb.zip", 20)
    with pytest.warns(UserWarning), pytest.raises(OversizedArchiveError, match="moved it to"):
        download.extract_zip(archive, tmp_path, "brain")
    assert not archive.exists() and len(list(tmp_path.glob("bomb.zip.corrupt-*"))) == 1


def test_an_archive_far_larger_than_its_dataset_is_refused(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:  # incompressible-looking: ratio 1
        zf.writestr("x.bin", bytes(2 * MB))
    with pytest.raises(OversizedArchiveError, match="for a dataset of about 0.1 MB"):
        download.extract_zip(archive, tmp_path / "raw", "x", downloaded=False, expected_bytes=MB // 10)
    assert download.extract_zip(archive, tmp_path / "raw", "x", downloaded=False, expected_bytes=MB).is_dir()


def test_a_failed_extraction_leaves_nothing(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/1.png", b"1")

    def half_then_fail(self, path):
        (Path(path) / "partial").mkdir(parents=True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        download.extract_zip(archive, tmp_path / "raw", "a", downloaded=False)
    assert list((tmp_path / "raw").iterdir()) == []


def test_an_extraction_without_the_layout_is_removed(tmp_path):
    archive = tmp_path / "junk.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("junk/readme.txt", b"not a dataset")
    assert download.extract_layout(archive, tmp_path / "raw", "junk", lambda d: None, downloaded=False) is None
    assert list((tmp_path / "raw").iterdir()) == []


def test_prepare_from_a_zip_bomb_writes_nothing(tmp_path):
    archive = _zeros_zip(tmp_path / "bomb.zip", 20)
    with pytest.raises(OversizedArchiveError):
        data.prepare("brain_mri", tmp_path / "data", SIZE, source=archive)
    assert not (tmp_path / "data").exists()


def test_prepare_from_a_zip_without_the_layout_leaves_no_extraction(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("other/readme.txt", b"x" * 1000)
    with pytest.raises(data.DatasetUnavailableError, match="not in the authors' layout"):
        data.prepare("brain_mri", tmp_path / "data", SIZE, source=archive)
    assert [p.name for p in (tmp_path / "data" / "brain_mri" / "raw").iterdir()] == []


def test_a_damaged_user_archive_is_reported_not_moved(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/1.png", b"1" * 1000)
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(CorruptFileError, match="damaged"):
        download.extract_zip(archive, tmp_path / "raw", "a", downloaded=False)
    assert archive.exists()
