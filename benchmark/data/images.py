"""Decode images (files or arrays) into the cache format: uint8 [N, 3, size, size], RGB.

Images are resized to a square ``size`` x ``size`` (as MedMNIST+ does), grayscale is repeated
over three channels, and 16-bit or float images are min-max scaled to 0..255 rather than
clipped. Decoding happens once, in :func:`benchmark.data.prepare`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .base import RawSplit

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


def decode_files(paths: Sequence[Path], size: int, desc: str = "decoding") -> torch.Tensor:
    """Image files as uint8 [N, 3, size, size], with a progress bar."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=None)):
        try:
            out[i] = torch.from_numpy(read_image(path, size)).permute(2, 0, 1)
        except OSError as err:
            raise OSError(f"cannot decode image {path}: {err}") from err
    return out


def decode_array(array: np.ndarray, size: int) -> torch.Tensor:
    """[N, H, W] (grayscale) or [N, H, W, C] uint8 as uint8 [N, 3, size, size], resized with
    antialiasing when H or W differs from ``size``."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8))
    t = (t.unsqueeze(-1) if t.ndim == 3 else t).permute(0, 3, 1, 2)
    if t.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got an array of shape {array.shape}")
    t = t.expand(-1, 3, -1, -1)
    if t.shape[-2:] == (size, size):
        return t.contiguous()
    out = torch.empty((len(t), 3, size, size), dtype=torch.uint8)
    for start in range(0, len(t), RESIZE_CHUNK):
        chunk = t[start:start + RESIZE_CHUNK].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + RESIZE_CHUNK] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def decode(split: RawSplit, size: int, desc: str = "decoding") -> torch.Tensor:
    """The images of ``split`` (files or an array) as uint8 [N, 3, size, size]."""
    if isinstance(split.images, np.ndarray):
        return decode_array(split.images, size)
    return decode_files(split.images, size, desc)
