"""Save and load a sparse adapter: (indices, deltas) per tuned weight plus the extra trained
modules (the head), in one safetensors file of a few kilobytes.

Loading validates the whole file first (a checksum of the data, lengths, index ranges,
duplicates, the recorded backbone size and a fingerprint of the model it was trained on) and
only then changes the model, so a refused load leaves the model untouched. Files without the
newer metadata keys (backbone_params, model_fingerprint, checksum) load with the other checks.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .api import num_backbone_parameters
from .select import Mask, is_integer
from .sparse import SparseDeltaLinear, apply, delta_sites

FORMAT = "shpeft-adapter/1"
PREFIXES = ("delta", "indices", "extra")  # tensor names are <prefix>::<parameter name>
METADATA_KEYS = ("format", "shapes", "backbone_params", "model_fingerprint", "checksum")

# a weight under torch.nn.utils.parametrize is stored as <module>.parametrizations.<name>.original
_PARAMETRIZED = re.compile(r"(^|\.)parametrizations\.([^.]+)\.original$")


class AdapterMismatchError(ValueError):
    """The adapter file does not fit the model it is loaded into."""


class InvalidAdapterError(AdapterMismatchError):
    """The file is not a well-formed shpeft adapter (unreadable, wrong metadata, inconsistent tensors)."""


@dataclass(frozen=True)
class Adapter:
    """The validated contents of an adapter file."""

    shapes: dict[str, torch.Size]  # tuned weight -> its shape
    indices: dict[str, Tensor]  # tuned weight -> its unique flat indices (int64)
    deltas: dict[str, Tensor]  # tuned weight -> float deltas, one per index
    extras: dict[str, Tensor]  # other trained parameters (the head) by name
    backbone_params: int | None  # the ratio's denominator; None in files from before it was recorded
    fingerprint: str | None  # model_fingerprint of the model it was trained on; None in older files

    @property
    def k(self) -> int:
        return sum(int(i.numel()) for i in self.indices.values())

    def mask(self) -> Mask:
        total = self.backbone_params or sum(s.numel() for s in self.shapes.values())
        return Mask(
            indices=self.indices,
            shapes=self.shapes,
            thresholds={n: float("nan") for n in self.shapes},
            ratio=self.k / total,
            total=total,
            scope="loaded",
        )


def plain_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every parameter of ``model`` under the name it has without shpeft's wrappers.

    Sparse deltas are left out and wrapped weights get their original names back
    (``blocks.0.mlp.fc1.base.weight`` -> ``blocks.0.mlp.fc1.weight``), so a model gives the
    same names and shapes before and after :func:`shpeft.apply`.
    """
    deltas = {id(site.delta) for site in delta_sites(model).values()}
    wrapped = {name for name, m in model.named_modules() if isinstance(m, SparseDeltaLinear)}
    plain = {}
    for name, p in model.named_parameters():
        if id(p) in deltas:
            continue
        name = _PARAMETRIZED.sub(r"\1\2", name)
        owner, _, leaf = name.rpartition(".")
        parent, _, last = owner.rpartition(".")
        if last == "base" and parent in wrapped:  # SparseDeltaLinear keeps the nn.Linear as .base
            name = f"{parent}.{leaf}" if parent else leaf
        plain[name] = p
    return plain


def model_fingerprint(model: nn.Module) -> str:
    """Hash of the sorted (name, shape) of all parameters: differs for another depth, patch size,
    image size or class count even where every tuned weight has the same shape."""
    listing = sorted((name, list(p.shape)) for name, p in plain_parameters(model).items())
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def checksum(tensors: Mapping[str, Tensor]) -> str:
    """Hash of every tensor's name, dtype, shape and bytes: safetensors checks the header but
    not the data, so without it a flipped byte in a delta or the head would load silently."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _compact(indices: Tensor, numel: int) -> Tensor:
    """int32 indices where the weight has fewer than 2^31 entries (every ViT matrix): a third smaller files."""
    dtype = torch.int32 if numel < 2**31 else torch.int64
    return indices.to(device="cpu", dtype=dtype).contiguous()


def save_adapter(model: nn.Module, path: str | Path, *, backbone_params: int | None = None) -> Path:
    """Write the deltas, their indices and every other trainable parameter of ``model``.

    ``backbone_params`` (the ratio's denominator, reported by ``python -m shpeft inspect``)
    defaults to :func:`shpeft.num_backbone_parameters` of ``model``.
    """
    sites = delta_sites(model)
    if not sites:
        raise ValueError("the model has no sparse deltas: call shpeft.apply(model, mask) first")
    if backbone_params is None:
        backbone_params = num_backbone_parameters(model)
    if not (is_integer(backbone_params) and backbone_params > 0):
        raise ValueError(f"backbone_params must be a positive int, got {backbone_params!r}")
    tensors: dict[str, Tensor] = {}
    for name, site in sites.items():
        tensors[f"delta::{name}"] = site.delta.detach().float().cpu().contiguous()
        tensors[f"indices::{name}"] = _compact(site.indices, site.shape.numel())
    for name, p in plain_parameters(model).items():
        if p.requires_grad:
            tensors[f"extra::{name}"] = p.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "shapes": json.dumps({n: list(s.shape) for n, s in sites.items()}),
        "backbone_params": str(int(backbone_params)),
        "model_fingerprint": model_fingerprint(model),
        "checksum": checksum(tensors),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def _parse_shapes(raw: str | None) -> dict[str, torch.Size]:
    try:
        shapes = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError as err:
        raise InvalidAdapterError(f"adapter metadata 'shapes' is not valid JSON: {err}") from None
    if not isinstance(shapes, dict):
        raise InvalidAdapterError("adapter metadata 'shapes' is missing or not a JSON object")
    for name, shape in shapes.items():
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise InvalidAdapterError(f"adapter metadata gives {name!r} the invalid shape {shape!r}")
    return {name: torch.Size(shape) for name, shape in shapes.items()}


def _parse_backbone(raw: str | None) -> int | None:
    if not raw:  # files written before it was always recorded
        return None
    if not re.fullmatch(r"[1-9][0-9]*", raw):
        raise InvalidAdapterError(f"adapter metadata 'backbone_params' is not a positive int: {raw!r}")
    return int(raw)


def _check_site(name: str, shape: torch.Size, indices: Tensor, delta: Tensor) -> None:
    """One tuned weight's indices and deltas: 1-D, equal length, unique, in range, finite."""
    if indices.dtype not in (torch.int32, torch.int64) or indices.dim() != 1:
        raise InvalidAdapterError(
            f"indices of {name!r} must be 1-D int32/int64, got {indices.dtype} of shape {tuple(indices.shape)}"
        )
    if not delta.is_floating_point() or delta.shape != indices.shape:
        raise InvalidAdapterError(
            f"{name!r} has {tuple(delta.shape)} {delta.dtype} deltas for {indices.numel()} indices"
        )
    if indices.numel() and (indices.min() < 0 or indices.max() >= shape.numel()):
        raise InvalidAdapterError(
            f"indices of {name!r} leave the range [0, {shape.numel()}) of its shape {tuple(shape)}"
        )
    if torch.unique(indices).numel() != indices.numel():
        raise InvalidAdapterError(f"indices of {name!r} contain duplicates")
    if not torch.isfinite(delta).all():
        raise InvalidAdapterError(f"deltas of {name!r} contain NaN/Inf")


def _validated(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Adapter:
    """Every check that needs only the file; raises InvalidAdapterError naming the first problem."""
    shapes = _parse_shapes(metadata.get("shapes"))
    groups: dict[str, dict[str, Tensor]] = {prefix: {} for prefix in PREFIXES}
    for key, value in tensors.items():
        prefix, sep, name = key.partition("::")
        if not sep or prefix not in groups:
            raise InvalidAdapterError(f"unexpected tensor {key!r} in the adapter file")
        groups[prefix][name] = value
    for prefix in ("delta", "indices"):
        if set(groups[prefix]) != set(shapes):
            odd = sorted(set(groups[prefix]) ^ set(shapes))[0]
            raise InvalidAdapterError(f"adapter {prefix} tensors and metadata 'shapes' disagree on {odd!r}")
    for name, shape in shapes.items():
        _check_site(name, shape, groups["indices"][name], groups["delta"][name])
    for name, value in groups["extra"].items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InvalidAdapterError(f"adapter parameter {name!r} contains NaN/Inf")
    return Adapter(
        shapes=shapes,
        indices={n: groups["indices"][n].long() for n in shapes},
        deltas=groups["delta"],
        extras=groups["extra"],
        backbone_params=_parse_backbone(metadata.get("backbone_params")),
        fingerprint=metadata.get("model_fingerprint"),
    )


def read_adapter(path: str | Path) -> Adapter:
    """The validated contents of an adapter file; a clear one-line error for a missing,
    corrupt or inconsistent file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file not found: {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise InvalidAdapterError(f"{path} is not a readable safetensors adapter: {err}") from err
    if metadata.get("format") != FORMAT:
        raise InvalidAdapterError(f"{path} is not an shpeft adapter (format {metadata.get('format')!r})")
    unknown = sorted(set(metadata) - set(METADATA_KEYS))
    if unknown:  # e.g. a corrupted key name, which would otherwise read as an older file without it
        raise InvalidAdapterError(f"{path} has unexpected metadata {unknown[0]!r}")
    if metadata.get("checksum") not in (None, checksum(tensors)):  # files before it have none
        raise InvalidAdapterError(f"{path} is corrupt: its tensors do not match the checksum recorded at save")
    return _validated(tensors, metadata)


def _check_fits(adapter: Adapter, model: nn.Module) -> None:
    """Every check of the adapter against ``model``; raises AdapterMismatchError naming the first misfit."""
    if delta_sites(model):
        raise AdapterMismatchError("the model already carries sparse deltas; load into a plain model")
    params = dict(model.named_parameters())
    for kind, name, shape in [
        *(("weight", n, s) for n, s in adapter.shapes.items()),
        *(("parameter", n, v.shape) for n, v in adapter.extras.items()),
    ]:
        if name not in params or params[name].shape != shape:
            found = tuple(params[name].shape) if name in params else "missing"
            raise AdapterMismatchError(f"adapter {kind} {name!r} has shape {tuple(shape)}, model has {found}")
    backbone = num_backbone_parameters(model)
    if adapter.backbone_params not in (None, backbone):
        raise AdapterMismatchError(
            f"adapter was trained on a backbone of {adapter.backbone_params} parameters, this model has {backbone}"
        )
    fingerprint = model_fingerprint(model)
    if adapter.fingerprint not in (None, fingerprint):
        raise AdapterMismatchError(
            f"adapter was trained on a model with other parameter shapes (fingerprint {adapter.fingerprint}, "
            f"this model {fingerprint}): another depth, patch size or image size?"
        )


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Apply a saved adapter to a plain (not yet wrapped) model; the model is changed only
    once the whole file has been checked against it."""
    adapter = read_adapter(path)
    _check_fits(adapter, model)
    params = dict(model.named_parameters())
    apply(model, adapter.mask(), train_extra=())
    with torch.no_grad():
        for name, site in delta_sites(model).items():
            site.delta.copy_(adapter.deltas[name])
        for name, value in adapter.extras.items():  # the same Parameter objects, wrapped or not
            params[name].copy_(value)
            params[name].requires_grad_(True)
    return model
