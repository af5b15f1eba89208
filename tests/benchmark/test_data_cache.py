"""The uint8 cache: decoded once, reused, written atomically, described by meta.json."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import benchmark.data as data
from benchmark.data import images as images_module
from benchmark.data.base import RawSplit, Source
from benchmark.paths import READY
from benchmark.data.images import decode, read_image
from benchmark.data.medmnist import NpzMember
from benchmark.data.registry import DatasetSpec


@pytest.fixture
def counted(data_registry):
    """A registered dataset whose loader counts its calls (3 classes, 30 array images)."""
    calls = []

    def loader(request):
        calls.append(request.size)
        images = np.random.default_rng(0).integers(0, 256, (30, 12, 12, 3), dtype=np.uint8)
        return Source({"all": RawSplit(images, np.arange(30) % 3)}, ("a", "b", "c"), request.raw)

    data.register(DatasetSpec(name="counted", modality="test", num_classes=3, class_names=("a", "b", "c"),
                              splits="", source="test", status="user", loader=loader))
    return calls


def test_prepare_decodes_once_and_reuses_the_cache(tmp_path, counted):
    out = data.prepare("counted", tmp_path, size=8)
    assert out == tmp_path / "counted" / "8" and (out / READY).is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert data.prepare("counted", tmp_path, size=8) == out
    data.load("counted", tmp_path, size=8)
    assert counted == [8]  # the loader (and decoding) ran once
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    data.prepare("counted", tmp_path, size=10)  # another size is another cache
    assert counted == [8, 10]
    assert not list((tmp_path / "counted").glob(".*tmp*"))


def test_load_returns_uint8_images_and_int64_labels(tmp_path, counted):
    splits = data.load("counted", tmp_path, size=8)
    assert set(splits) == {"train", "val", "test"}
    for split in splits.values():
        assert isinstance(split, data.TensorSplit)
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 8, 8)
        assert split.labels.dtype == torch.int64 and len(split.labels) == len(split.images)
    info = json.loads((tmp_path / "counted" / "8" / "meta.json").read_text())
    assert info["class_names"] == ["a", "b", "c"] and info["size"] == 8
    assert {s: c["total"] for s, c in info["counts"].items()} == {"train": 21, "val": 3, "test": 6}
    assert info["splits"]["seed"] == 0 and info["files"] == {}
    assert info["checksum"] == {"status": "unpublished", "files": {}}  # arrays: nothing was read from files


def test_interrupted_cache_is_rebuilt(tmp_path, counted):
    partial = tmp_path / "counted" / "8"
    partial.mkdir(parents=True)
    (partial / "train.pt").write_bytes(b"half written")  # no READY: an interrupted run
    data.prepare("counted", tmp_path, size=8)
    assert counted == [8] and (partial / READY).is_file()
    assert data.load("counted", tmp_path, size=8)["train"].images.shape[0] == 21


def test_failing_loader_leaves_no_cache(tmp_path, data_registry):
    def loader(request):
        raise data.DatasetUnavailableError("not here")

    data.register(DatasetSpec(name="broken", modality="x", num_classes=1, class_names=("a",), splits="",
                              source="", status="user", loader=loader))
    with pytest.raises(data.DatasetUnavailableError):
        data.prepare("broken", tmp_path, size=8)
    assert not (tmp_path / "broken" / "8").exists()


def test_registry_classes_must_match_the_data(tmp_path, data_registry):
    data.register(DatasetSpec(
        name="mismatch", modality="x", num_classes=2, class_names=("x", "y"), splits="", source="", status="user",
        loader=lambda request: Source({"all": RawSplit(np.zeros((4, 2, 2), np.uint8), [0, 1, 0, 1])},
                                      ("y", "x"), request.raw)))
    with pytest.raises(ValueError, match="classes"):
        data.prepare("mismatch", tmp_path, size=2)


def test_decoding_modes(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 16-bit: scaled, not clipped
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    deep = read_image(tmp_path / "deep.png", 8)
    assert deep.shape == (8, 8, 3) and deep.min() == 0 and deep.max() == 255 and len(np.unique(deep)) > 32
    Image.new("RGBA", (10, 6), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    assert read_image(tmp_path / "alpha.png", 4)[0, 0].tolist() == [10, 20, 30]
    Image.new("L", (40, 40), 77).save(tmp_path / "gray.jpg")
    assert (read_image(tmp_path / "gray.jpg", 5) == 77).all()
    gray = decode(RawSplit(np.full((2, 6, 6), 9, np.uint8), np.zeros(2)), 3)
    assert gray.shape == (2, 3, 3, 3) and (gray == 9).all()
    with pytest.raises(ValueError, match="channels"):
        decode(RawSplit(np.zeros((1, 4, 4, 2), np.uint8), np.zeros(1)), 4)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_members_stream_in_chunks_and_decode_like_the_whole_array(tmp_path, save, monkeypatch):
    """MedMNIST splits are read from the zip member chunk by chunk (bounded memory for the
    224 px files) and decoded into a given buffer; the result equals decoding np.load's array."""
    rng = np.random.default_rng(0)
    rgb, gray = rng.integers(0, 256, (23, 6, 6, 3), np.uint8), rng.integers(0, 256, (5, 6, 6), np.uint8)
    save(tmp_path / "d.npz", rgb=rgb, gray=gray)
    member = NpzMember(tmp_path / "d.npz", "rgb")
    assert len(member) == 23 and member.shape == rgb.shape and member.dtype == np.uint8
    blocks = list(member.chunks(10))
    assert [len(b) for b in blocks] == [10, 10, 3] and np.array_equal(np.concatenate(blocks), rgb)
    assert np.array_equal(member[np.array([4, 0])], rgb[[4, 0]])
    monkeypatch.setattr(images_module, "RESIZE_CHUNK", 4)  # several chunks through decode
    for key, array in [("rgb", rgb), ("gray", gray)]:
        labels = np.zeros(len(array))
        out = torch.zeros((len(array), 3, 4, 4), dtype=torch.uint8)
        streamed = decode(RawSplit(NpzMember(tmp_path / "d.npz", key), labels), 4, out=out)
        assert streamed.data_ptr() == out.data_ptr()
        assert torch.equal(streamed, decode(RawSplit(array, labels), 4))
