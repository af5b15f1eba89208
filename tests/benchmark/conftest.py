"""Fixtures of the data tests: tiny image files in real layouts, and an isolated dataset registry."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write_images(paths: Iterable[Path], size: tuple[int, int] = (12, 10), seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    written = []
    for path in paths:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        written.append(path)
    return written


@pytest.fixture
def data_images() -> Callable[..., list[Path]]:
    """``data_images(paths, size=(w, h), seed=0)`` writes random RGB images (PNG or JPEG by suffix)."""
    return _write_images


@pytest.fixture
def data_registry(monkeypatch: pytest.MonkeyPatch):
    """The dataset registry, restored after the test (so tests may register their own specs)."""
    from benchmark.data import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry
