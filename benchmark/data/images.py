"""Decode images (files or arrays) into the cache format: uint8 [N, 3, size, size], RGB.

Images are resized to a square ``size`` x ``size`` (as MedMNIST+ does), grayscale is repeated
over three channels, and 16-bit or float images are min-max scaled to 0..255 rather than
clipped. Decoding happens once, in :func:`benchmark.data.prepare`.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .base import RawSplit
from .errors import CorruptFileError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
RESIZE_CHUNK = 256  # images resized at a time from an array (bounds the float32 working memory)


def is_image(path: Path) -> bool:
    """Whether ``path`` has an image suffix this module decodes."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = a.min(), a.max()
        img = Image.fromarray(np.round((a - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8))
    return img.convert("RGB")


def read_image(path: Path, size: int) -> np.ndarray:
    """One image file as uint8 [size, size, 3]."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG only: decode at a reduced scale that is still >= size
        rgb = _to_rgb(img).resize((size, size), Image.Resampling.BICUBIC)
    return np.array(rgb)


def decode_files(paths: Sequence[Path], size: int, out: torch.Tensor, desc: str = "decoding") -> torch.Tensor:
    """Image files into ``out`` (uint8 [N, 3, size, size]), with a progress bar."""
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=None)):
        try:
            out[i] = torch.from_numpy(read_image(path, size)).permute(2, 0, 1)
        except (OSError, ValueError, SyntaxError) as err:  # what PIL raises on a truncated or foreign file
            raise CorruptFileError(f"cannot decode image {path}: {err}") from err
    return out


def _row_chunks(array: Any, rows: int) -> Iterator[np.ndarray]:
    """Consecutive blocks of rows of an array, or of a lazy array that streams them."""
    if hasattr(array, "chunks"):
        yield from array.chunks(rows)
    else:
        for start in range(0, len(array), rows):
            yield array[start:start + rows]


def decode_array(array: Any, size: int, out: torch.Tensor) -> torch.Tensor:
    """[N, H, W] (grayscale) or [N, H, W, C] uint8 into ``out`` (uint8 [N, 3, size, size]),
    resized with antialiasing when H or W differs from ``size``; ``RESIZE_CHUNK`` images at a
    time, so memory stays bounded whatever N is."""
    start = 0
    for chunk in _row_chunks(array, RESIZE_CHUNK):
        t = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.uint8))
        t = (t.unsqueeze(-1) if t.ndim == 3 else t).permute(0, 3, 1, 2)
        if t.shape[1] not in (1, 3):
            raise ValueError(f"expected 1 or 3 channels, got an array of shape {array.shape}")
        t = t.expand(-1, 3, -1, -1)
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            t = t.round().clamp(0, 255).to(torch.uint8)
        out[start:start + len(t)] = t
        start += len(t)
    return out


def decode(split: RawSplit, size: int, desc: str = "decoding", out: torch.Tensor | None = None) -> torch.Tensor:
    """The images of ``split`` (files or an array) as uint8 [N, 3, size, size], written into
    ``out`` when given (e.g. a memory-mapped buffer), else into a new tensor."""
    if out is None:
        out = torch.empty((len(split), 3, size, size), dtype=torch.uint8)
    if isinstance(split.images, list):
        return decode_files(split.images, size, out, desc)
    return decode_array(split.images, size, out)
