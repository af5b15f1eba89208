import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark.data as data
from benchmark import paths
from benchmark.data.registry import DatasetSpec


def test_unknown_name_lists_registered_names():
    with pytest.raises(KeyError) as err:
        data.get("no-such-dataset")
    message = err.value.args[0]
    for name in ("covid_ct", "chaoyang", "busi", "pathmnist", "synthetic-medmnist", "folder:<path>"):
        assert name in message


def test_paper_datasets_carry_their_status():
    assert {data.get(n).status for n in ("covid_ct", "chaoyang", "busi")} == {"confirmed"}
    assert data.get("brain_mri").status == "likely"
    for alias, flag in {"standin-derma": "dermamnist", "standin-blood": "bloodmnist",
                        "standin-retina": "retinamnist"}.items():
        spec = data.get(alias)
        assert spec.status == "stand-in" and spec.raw_name == flag  # shares the raw files, not the cache
        assert spec.raw_dir("data") == paths.raw_dir("data", flag)
        assert spec.class_names == data.get(flag).class_names


def test_medmnist_six_are_registered_with_their_classes():
    expected = {"pathmnist": 9, "dermamnist": 7, "bloodmnist": 8, "retinamnist": 5, "breastmnist": 2,
                "pneumoniamnist": 2}
    for name, k in expected.items():
        spec = data.get(name)
        assert (spec.status, spec.num_classes, len(spec.class_names)) == ("medmnist", k, k)
    assert "chestmnist" not in data.names()  # multi-label: not a single-label classification task


def _spec(name: str, status: str = "user") -> DatasetSpec:
    return DatasetSpec(name=name, modality="x", num_classes=1, class_names=("a",), splits="", source="",
                       status=status, loader=lambda request: None)


def test_register_rejects_duplicates_and_unknown_status(data_registry):
    data.register(_spec("mine"))
    with pytest.raises(ValueError, match="already registered"):
        data.register(_spec("mine"))
    data.register(_spec("mine"), replace=True)
    with pytest.raises(ValueError, match="status"):
        _spec("other", status="maybe")
    assert "mine" in data.names()


def test_folder_prefix_resolves_to_a_user_spec(tmp_path, data_registry):
    spec = data.get(f"folder:{tmp_path / 'scans'}")
    assert spec.status == "user" and spec.num_classes == 0  # known once read: meta.json's num_classes
    assert spec.raw_dir(tmp_path / "root") == tmp_path / "scans"  # read in place
    assert data.get(f"folder:{tmp_path / 'scans'}") is spec
    assert paths.dataset_tag(spec.name).startswith("folder-scans-")


TOY_MODULE = '''
"""A dataset dropped into the package: one file, no other edit."""
import numpy as np

from .base import RawSplit, Source
from .registry import DatasetSpec, register


def load_toy(request):
    images = np.zeros((12, 4, 4), np.uint8)
    return Source({"all": RawSplit(images, np.arange(12) % 2)}, ("left", "right"), request.raw)


register(DatasetSpec(name="toy-plugin", modality="toy", num_classes=2, class_names=("left", "right"),
                     splits="seeded", source="generated in memory", status="synthetic", loader=load_toy))
'''


def test_a_dropped_in_dataset_module_is_listed(tmp_path):
    """Adding a dataset = adding one module to benchmark/data/ (auto-discovered by pkgutil)."""
    package = Path(data.__file__).parents[1]
    copy = tmp_path / "repo" / "benchmark"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "data" / "zz_toy_plugin.py").write_text(TOY_MODULE)
    run = functools.partial(subprocess.run, cwd=copy.parent, capture_output=True, text=True, timeout=300)
    listed = run([sys.executable, "-m", "benchmark.data", "list"])
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert any(line.split()[:2] == ["toy-plugin", "synthetic"] for line in listed.stdout.splitlines())
    assert "toy-plugin" not in data.names()  # this process's package has no such file
