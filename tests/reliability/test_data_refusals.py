"""Degenerate data refused by name before decoding; hidden/OS folders ignored; stale caches
rebuilt from their sources' fingerprint; stale temporaries removed; read-only roots; the CLI's
one-line errors."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

import benchmark.data as data
from benchmark import paths
from benchmark.data import cache, images
from benchmark.data.__main__ import main

from .helpers import SIZE, prepare_busi, temporaries, tree_state


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if anything is decoded."""
    def refuse(*args, **kwargs):
        raise AssertionError("decoded before refusing")
    monkeypatch.setattr(images, "decode_files", refuse)
    monkeypatch.setattr(images, "decode_array", refuse)


def _folder(tmp_path, write_images, counts, splits=None):
    root = tmp_path / "scans"
    for cls, n in counts.items():
        write_images([root / cls / f"{i}.png" for i in range(n)])
        (root / cls).mkdir(parents=True, exist_ok=True)
    for split, lines in (splits or {}).items():
        (root / "splits").mkdir(exist_ok=True)
        (root / "splits" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("counts, splits, message", [
    ({"only": 10}, None, "at least two classes"),
    ({"a": 5, "b": 5}, {"train": ["a/0.png", "a/1.png", "a/2.png", "b/0.png"], "test": ["a/3.png", "b/1.png"],
                        "val": []}, r"split\(s\) \['val'\] have no images"),
    ({"a": 5, "b": 5}, {"train": ["a/0.png", "a/1.png"], "val": ["b/0.png"], "test": ["b/1.png"]},
     r"class\(es\) \['b'\] have no training image"),
    ({"a": 5, "b": 0}, None, r"class\(es\) \['b'\] have no training image"),
])
def test_degenerate_data_is_refused_by_name_before_decoding(tmp_path, write_images, no_decoding, counts, splits,
                                                            message):
    root = _folder(tmp_path, write_images, counts, splits)
    with pytest.raises(data.DegenerateDatasetError, match=message):
        data.prepare(f"folder:{root}", tmp_path / "data", SIZE)
    assert not paths.cache_dir(tmp_path / "data", f"folder:{root}", SIZE).exists()


def test_hidden_and_os_metadata_entries_are_never_classes_or_images(tmp_path, write_images):
    root = _folder(tmp_path, write_images, {"a": 5, "b": 5})
    write_images([root / "__MACOSX" / "a" / "._0.png", root / ".thumbnails" / "x.png", root / "a" / ".hidden.png",
                  root / "b" / ".cache" / "y.png"])
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "a" / "Thumbs.db").write_bytes(b"\0")
    info = data.meta(f"folder:{root}", tmp_path / "data", SIZE)
    assert info["class_names"] == ["a", "b"]
    assert sorted(sum(info["files"].values(), [])) == sorted(f"{c}/{i}.png" for c in "ab" for i in range(5))


def test_a_folder_prepared_empty_then_filled_works(tmp_path, write_images):
    root = tmp_path / "scans"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    name = f"folder:{root}"
    with pytest.raises(data.DegenerateDatasetError):
        data.prepare(name, tmp_path / "data", SIZE)
    write_images([root / c / f"{i}.png" for c in "ab" for i in range(5)])
    info = data.meta(name, tmp_path / "data", SIZE)
    assert sum(info["counts"][s]["total"] for s in data.SPLITS) == 10


def test_a_cache_is_rebuilt_when_its_sources_change_and_only_then(tmp_path, write_images):
    root = _folder(tmp_path, write_images, {"a": 5, "b": 5})
    name, out = f"folder:{root}", tmp_path / "data"
    data.prepare(name, out, SIZE)
    ready = paths.ready_marker(out, name, SIZE)
    stamp = ready.stat().st_mtime_ns
    data.prepare(name, out, SIZE)
    assert ready.stat().st_mtime_ns == stamp  # unchanged sources: not rebuilt
    write_images([root / "b" / "3.png"], seed=7)  # same name, new content
    data.prepare(name, out, SIZE)
    assert ready.stat().st_mtime_ns != stamp
    (root / "a" / "4.png").unlink()  # a file removed
    assert sum(data.meta(name, out, SIZE)["counts"][s]["total"] for s in data.SPLITS) == 9


def test_stale_temporaries_of_dead_processes_are_removed(busi_mirror, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    leftovers = [tmp_path / "busi" / f".{SIZE}.tmp-{dead}-0123abcd" / "train.decoding.npy",
                 tmp_path / "busi" / "raw" / f".Dataset_BUSI.zip.tmp-{dead}-0123abcd",
                 tmp_path / "busi" / "raw" / f".Dataset_BUSI_with_GT.tmp-{dead}-0123abcd" / "benign" / "x.png"]
    alive = tmp_path / "busi" / "raw" / f".Dataset_BUSI.zip.tmp-{os.getppid()}-0123abcd"  # a live process's
    for path in [*leftovers, alive]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    prepare_busi(tmp_path, busi_mirror)
    assert temporaries(tmp_path) == [alive]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_an_unprepared_read_only_root_is_a_named_error(tmp_path, write_images):
    root = _folder(tmp_path, write_images, {"a": 5, "b": 5})
    (tmp_path / "data").mkdir()
    (tmp_path / "data").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(data.DataError, match="writable data root"):
            data.prepare(f"folder:{root}", tmp_path / "data", SIZE)
    finally:
        (tmp_path / "data").chmod(stat.S_IRWXU)


def test_a_lock_that_cannot_be_created_is_a_named_error(tmp_path, write_images, monkeypatch):
    """What a read-only root does to `prepare` (simulated: root ignores permissions)."""
    def read_only(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(cache, "FileLock", read_only)
    root = _folder(tmp_path, write_images, {"a": 5, "b": 5})
    with pytest.raises(data.DataError, match="Permission denied.*writable data root"):
        data.prepare(f"folder:{root}", tmp_path / "data", SIZE)


def test_a_failed_download_leaves_the_folder_it_names_and_no_lock(tmp_path):
    """The first prepare of a registered dataset fails (an empty mirror: no network needed); what stays
    is the folder its message says to save the file in, not the prepare lock."""
    (tmp_path / "mirror").mkdir()
    with pytest.raises(data.DataError, match="by hand") as failed:
        data.prepare("covid_ct", tmp_path / "data", SIZE, mirror=tmp_path / "mirror")
    files = [p for p in (tmp_path / "data").rglob("*") if not p.is_dir()]
    assert files == []
    assert any(str(folder) in str(failed.value) for folder in (tmp_path / "data").rglob("*"))


def test_a_prepared_read_only_root_is_read_without_writing(busi_mirror, tmp_path):
    prepare_busi(tmp_path / "data", busi_mirror)
    before = tree_state(tmp_path / "data")
    modes = {p: p.stat().st_mode for p in [tmp_path / "data", *(tmp_path / "data").rglob("*")]}
    for path in modes:
        path.chmod(stat.S_IMODE(modes[path]) & ~0o222)
    try:
        splits = data.load("busi", tmp_path / "data", SIZE)
        assert sum(len(s.labels) for s in splits.values()) == 40
        assert tree_state(tmp_path / "data") == before  # nothing written, not even a lock file
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_the_cli_prints_one_error_line_and_exits_2(tmp_path, capsys, write_images):
    root = _folder(tmp_path, write_images, {"only": 4})
    args = ["prepare", f"folder:{root}", "--root", str(tmp_path / "data"), "--size", str(SIZE)]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err and "at least two classes" in err
    with pytest.raises(data.DegenerateDatasetError):
        main([*args, "--debug"])  # the traceback, for a bug report
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", "chaoyang", "--root", str(tmp_path / "data")])  # a multi-line message, one line
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "train.json" in err
