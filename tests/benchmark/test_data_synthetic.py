"""Synthetic data: the real on-disk formats, read by the real loaders, with a learnable signal."""
import numpy as np
import pytest
import torch

import benchmark.data as data
from benchmark.data.__main__ import main
from benchmark.data.folder import load_folder
from benchmark.data.synthetic import (
    SynthConfig,
    write_covid_ct,
    write_folder,
    write_medmnist,
)


@pytest.mark.parametrize("channels", [1, 3])
def test_medmnist_npz_has_the_official_keys_dtypes_and_shapes(tmp_path, channels):
    path = write_medmnist(tmp_path, SynthConfig(size=28, channels=channels))
    assert path.name == "synthetic-medmnist.npz"  # medmnist's name for 28 px
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted(f"{s}_{k}" for s in data.SPLITS for k in ("images", "labels"))
        shape = (28, 28) if channels == 1 else (28, 28, 3)
        for split, n in SynthConfig().counts().items():
            assert npz[f"{split}_images"].dtype == np.uint8 and npz[f"{split}_images"].shape == (n, *shape)
            assert npz[f"{split}_labels"].dtype == np.uint8 and npz[f"{split}_labels"].shape == (n, 1)
    assert write_medmnist(tmp_path, SynthConfig(size=64)).name == "synthetic-medmnist_64.npz"


def test_folder_writers_match_the_real_loaders(tmp_path):
    cfg = SynthConfig(num_classes=3, n_train=12, n_val=6, n_test=6, size=16)
    source = load_folder(write_folder(tmp_path / "plain", cfg, split_files=True))
    assert source.class_names == ("class0", "class1", "class2")
    assert {s: len(v) for s, v in source.splits.items()} == {"train": 12, "val": 6, "test": 6}
    covid = data.covid_ct.read_layout(write_covid_ct(tmp_path / "covid", cfg), expected=None)
    assert covid.class_names == ("COVID", "NonCOVID")
    assert {p.suffix for p in covid.splits["train"].images} == {".png", ".jpg"}


def _nearest_centroid_accuracy(splits: dict) -> float:
    train, test = splits["train"], splits["test"]
    x, xt = train.images.flatten(1).float(), test.images.flatten(1).float()
    centroids = torch.stack([x[train.labels == c].mean(0) for c in train.labels.unique()])
    return (torch.cdist(xt, centroids).argmin(1) == test.labels).float().mean().item()


@pytest.mark.parametrize("name", ["synthetic-medmnist", "synthetic-folder", "synthetic-covid-ct"])
def test_synthetic_datasets_are_learnable(tmp_path, name):
    splits = data.load(name, tmp_path, size=16)
    assert (tmp_path / name / "raw").is_dir()  # generated into the real format, then loaded
    chance = 1 / data.get(name).num_classes
    assert _nearest_centroid_accuracy(splits) > chance + 0.4


def test_cli_list_synth_prepare(tmp_path, capsys):
    main(["list"])
    out = capsys.readouterr().out
    assert "covid_ct" in out and "confirmed" in out and "stand-in" in out and "folder:<path>" in out
    main(["synth", "folder", str(tmp_path / "gen"), "--classes", "2", "--n-train", "6", "--n-val", "2",
          "--n-test", "2", "--size", "8"])
    assert len(list((tmp_path / "gen").rglob("*.png"))) == 10
    main(["prepare", f"folder:{tmp_path / 'gen'}", "--root", str(tmp_path / "data"), "--size", "8"])
    assert "per class" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", "nope", "--root", str(tmp_path)])
    assert exit_.value.code == 2 and "error: unknown dataset 'nope'" in capsys.readouterr().err
