"""Save and load a sparse adapter: (indices, deltas) per tuned weight plus the extra trained
modules (the head), in one safetensors file of a few kilobytes."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .select import Mask
from .sparse import apply, delta_sites

FORMAT = "shpeft-adapter/1"


class AdapterMismatchError(ValueError):
    """The adapter file does not fit the model it is loaded into."""


def _compact(indices: torch.Tensor, numel: int) -> torch.Tensor:
    """int32 indices where the weight has fewer than 2^31 entries (every ViT matrix): a third smaller files."""
    dtype = torch.int32 if numel < 2**31 else torch.int64
    return indices.to(device="cpu", dtype=dtype).contiguous()


def save_adapter(model: nn.Module, path: str | Path, *, backbone_params: int | None = None) -> Path:
    """Write the deltas, their indices and every other trainable parameter of ``model``."""
    sites = delta_sites(model)
    if not sites:
        raise ValueError("the model has no sparse deltas: call shpeft.apply(model, mask) first")
    site_params = {id(s.delta) for s in sites.values()}
    tensors: dict[str, torch.Tensor] = {}
    for name, site in sites.items():
        tensors[f"delta::{name}"] = site.delta.detach().float().cpu().contiguous()
        tensors[f"indices::{name}"] = _compact(site.indices, site.shape.numel())
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in site_params:
            tensors[f"extra::{name}"] = p.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "shapes": json.dumps({n: list(s.shape) for n, s in sites.items()}),
        "backbone_params": str(backbone_params or ""),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of an adapter file; a clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file not found: {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterMismatchError(f"{path} is not a readable safetensors adapter: {err}") from err
    if metadata.get("format") != FORMAT:
        raise AdapterMismatchError(f"{path} is not an shpeft adapter (format {metadata.get('format')!r})")
    return tensors, metadata


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Apply a saved adapter to a plain (not yet wrapped) model, checking every shape."""
    if delta_sites(model):
        raise AdapterMismatchError("the model already carries sparse deltas; load into a plain model")
    tensors, metadata = read_adapter(path)
    shapes = {n: torch.Size(s) for n, s in json.loads(metadata["shapes"]).items()}
    params = dict(model.named_parameters())
    for name, shape in shapes.items():
        if name not in params or params[name].shape != shape:
            found = tuple(params[name].shape) if name in params else "missing"
            raise AdapterMismatchError(
                f"adapter weight {name!r} has shape {tuple(shape)}, model has {found}"
            )
        if tensors[f"indices::{name}"].numel() and tensors[f"indices::{name}"].max() >= shape.numel():
            raise AdapterMismatchError(f"adapter indices of {name!r} exceed its {shape.numel()} entries")
    extras = {k.removeprefix("extra::"): v for k, v in tensors.items() if k.startswith("extra::")}
    for name, value in extras.items():
        if name not in params or params[name].shape != value.shape:
            found = tuple(params[name].shape) if name in params else "missing"
            raise AdapterMismatchError(
                f"adapter parameter {name!r} has shape {tuple(value.shape)}, model has {found}"
            )
    mask = Mask(
        indices={n: tensors[f"indices::{n}"].long() for n in shapes},
        shapes=shapes,
        thresholds={n: float("nan") for n in shapes},
        ratio=float("nan"),
        total=sum(s.numel() for s in shapes.values()),
        scope="loaded",
    )
    with torch.no_grad():
        for name, value in extras.items():
            params[name].copy_(value)
    apply(model, mask, train_extra=tuple(n.rpartition(".")[0] for n in extras))
    with torch.no_grad():
        for name, site in delta_sites(model).items():
            site.delta.copy_(tensors[f"delta::{name}"])
    return model
