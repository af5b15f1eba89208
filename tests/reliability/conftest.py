"""Fixtures of the fault-injection tests: tiny data in official formats, an isolated registry."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.official_formats import write_busi

from .helpers import BUSI_CFG


@pytest.fixture(scope="module")
def busi_mirror(tmp_path_factory) -> Path:
    """A mirror folder holding a tiny Dataset_BUSI.zip in the official layout."""
    folder = tmp_path_factory.mktemp("mirror")
    write_busi(folder, BUSI_CFG)
    return folder


@pytest.fixture
def write_images() -> Callable[..., list[Path]]:
    """``write_images(paths, side=6, seed=0)``: random RGB images (PNG or JPEG by suffix)."""
    def write(paths, side: int = 6, seed: int = 0) -> list[Path]:
        rng = np.random.default_rng(seed)
        for path in map(Path, paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        return list(map(Path, paths))
    return write


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch):
    """The dataset registry, restored after the test."""
    from benchmark.data import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry

