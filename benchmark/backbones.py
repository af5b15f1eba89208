"""Backbones: every one is a timm ``VisionTransformer`` whose forward gives logits.

Names (see ``BACKBONES`` and ``FAMILIES``):
  clip_vit_b16                  the paper's CLIP ViT-B/16 image tower, OpenAI weights
  tiny_vit                      a miniature CLIP tower (~150k params) for tests and the smoke DAG
  timm:<model>[.<tag>]          any timm ViT, e.g. timm:vit_small_patch16_224.augreg_in21k
  open_clip:<arch>/<tag>        an open_clip plain-ViT image tower (e.g. open_clip:ViT-B-16/laion2b_s34b_b88k)
                                rebuilt as a timm ViT so that all backbones share module names

Weights, first that applies: ``checkpoint`` (a timm state dict, or an OpenAI/open_clip CLIP checkpoint,
converted by timm's ``checkpoint_filter_fn``), then the Hugging Face hub (``pretrained``). The head is always
a fresh ``num_classes`` linear layer; every other tensor must come from the weights (strict check).

``clip_vit_b16`` is built as timm ``vit_base_patch16_clip_quickgelu_224.openai``: the same module names,
parameters and weight file as ``vit_base_patch16_clip_224.openai`` (hub repo
timm/vit_base_patch16_clip_224.openai), with the QuickGELU activation that the OpenAI weights were trained
with (timm's note on the non-quickgelu variant: "use quickgelu model variant for original results").
"""
from __future__ import annotations

import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, resolve_data_config
from timm.layers import LayerNorm
from timm.models import get_pretrained_cfg, load_state_dict
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import Tensor, nn

from benchmark.cli import UserError
from shpeft import HEAD, in_modules

__all__ = [
    "BACKBONES", "FAMILIES", "BackboneUnavailableError", "CheckpointError",
    "create_backbone", "data_config", "load_backbone_weights",
]

HUB_PROBE_TIMEOUT_S = 3.0
TINY_PRETRAINED_SEED = 0

# Architecture options shared by CLIP image towers (timm's vit_*_clip_* constructors use the same).
_CLIP_TOWER = dict(pre_norm=True, norm_layer=partial(LayerNorm, eps=1e-5))
_TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0,
                 act_layer="quick_gelu", **_CLIP_TOWER)
_CHECKPOINT_HINT = "pass it as checkpoint=PATH (command line: --checkpoint PATH)"


class BackboneUnavailableError(UserError, RuntimeError):
    """Pretrained weights could not be fetched (e.g. offline); the message says what to download."""


class CheckpointError(UserError, RuntimeError):
    """A weights file cannot be read or does not fit the backbone; the message names file and problem."""


class _Family(Protocol):
    """How one kind of backbone is parsed, built (random init) and where its pretrained weights live."""

    def parse(self, ref: str) -> tuple[str, str | None]: ...

    def build(self, arch: str, tag: str | None, num_classes: int, image_size: int | None) -> VisionTransformer: ...

    def weights(self, arch: str, tag: str | None) -> Path | Mapping[str, Tensor]: ...


class _Timm:
    """Any timm ViT; pretrained files come from the model's hub repository."""

    def parse(self, ref: str) -> tuple[str, str | None]:
        arch, _, tag = ref.partition(".")
        return arch, tag or None

    def build(self, arch: str, tag: str | None, num_classes: int, image_size: int | None) -> VisionTransformer:
        if not timm.is_model(arch):
            raise KeyError(f"unknown timm model {arch!r} (timm.list_models() lists them)")
        size = {} if image_size is None else {"img_size": image_size}
        model = timm.create_model(_timm_name(arch, tag), pretrained=False, num_classes=num_classes, **size)
        if not isinstance(model, VisionTransformer):
            raise KeyError(f"timm:{arch} is a {type(model).__name__}, not a VisionTransformer")
        return model

    def weights(self, arch: str, tag: str | None) -> Path:
        cfg = get_pretrained_cfg(_timm_name(arch, tag))
        what = f"timm:{_timm_name(arch, tag)}"
        if not cfg.hf_hub_id:
            raise BackboneUnavailableError(f"{what} has no hub weights; download {cfg.url or 'a checkpoint'} and "
                                           f"{_CHECKPOINT_HINT}, or use pretrained=False")
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        return _hub_file(cfg.hf_hub_id, files, what)


class _OpenClip:
    """open_clip plain-ViT image towers rebuilt as timm ViTs; weights via open_clip's pretrained registry."""

    _PLAIN_VIT_KEYS = {"image_size", "layers", "width", "patch_size", "head_width", "mlp_ratio"}

    def parse(self, ref: str) -> tuple[str, str | None]:
        arch, _, tag = ref.partition("/")
        return arch, tag or None

    def build(self, arch: str, tag: str | None, num_classes: int, image_size: int | None) -> VisionTransformer:
        import open_clip  # imported on use (~2 s): only open_clip: backbones need its configs

        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            raise KeyError(f"unknown open_clip model {arch!r}; known: {open_clip.list_models()}")
        vision = cfg["vision_cfg"]
        if extra := set(vision) - self._PLAIN_VIT_KEYS:
            raise ValueError(f"open_clip:{arch} is not a plain ViT tower (options {sorted(extra)}); "
                             "use a timm:<name> backbone instead")
        pretrained_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
        quick_gelu = cfg.get("quick_gelu", False) or pretrained_cfg.get("quick_gelu", False)
        model = VisionTransformer(
            img_size=image_size or vision["image_size"], patch_size=vision["patch_size"],
            embed_dim=vision["width"], depth=vision["layers"],
            num_heads=vision["width"] // vision.get("head_width", 64), mlp_ratio=vision.get("mlp_ratio", 4.0),
            act_layer="quick_gelu" if quick_gelu else "gelu", num_classes=num_classes, **_CLIP_TOWER,
        )
        model.pretrained_cfg = _clip_pretrained_cfg(model, f"open_clip:{arch}", pretrained_cfg.get("mean"),
                                                    pretrained_cfg.get("std"))
        return model

    def weights(self, arch: str, tag: str | None) -> Path:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
        if not cfg:
            raise KeyError(f"open_clip:{arch} needs a weight tag, open_clip:{arch}/<tag>; "
                           f"tags: {open_clip.list_pretrained_tags_by_model(arch)}")
        what = f"open_clip:{arch}/{tag}"
        if not cfg.get("hf_hub"):
            raise BackboneUnavailableError(f"{what} has no hub weights; download {cfg.get('url')} and "
                                           f"{_CHECKPOINT_HINT}")
        repo, filename = cfg["hf_hub"].rsplit("/", 1)  # 'org/name/' (default files) or 'org/name/file'
        files = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        return _hub_file(repo, files, what)


class _Tiny:
    """The miniature CLIP tower; its 'pretrained' weights are a fixed seeded init (same for every run seed)."""

    def parse(self, ref: str) -> tuple[str, str | None]:
        return ref, None

    def build(self, arch: str, tag: str | None, num_classes: int, image_size: int | None) -> VisionTransformer:
        model = VisionTransformer(**{**_TINY_VIT, "img_size": image_size or _TINY_VIT["img_size"]},
                                  num_classes=num_classes)
        model.pretrained_cfg = _clip_pretrained_cfg(model, arch)
        return model

    def weights(self, arch: str, tag: str | None) -> Mapping[str, Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_PRETRAINED_SEED)
            return self.build(arch, tag, 1, None).state_dict()


FAMILIES: dict[str, _Family] = {"timm": _Timm(), "open_clip": _OpenClip(), "tiny": _Tiny()}
BACKBONES: dict[str, str] = {
    "clip_vit_b16": "timm:vit_base_patch16_clip_quickgelu_224.openai",
    "tiny_vit": "tiny:tiny_vit",
}


def create_backbone(
    name: str,
    num_classes: int,
    *,
    pretrained: bool | str = True,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
) -> VisionTransformer:
    """Build backbone ``name`` with a fresh ``num_classes`` head.

    Weights come from ``checkpoint`` if given, else from the hub when ``pretrained`` is true (a string picks
    the weight tag: ``create_backbone("timm:vit_base_patch16_clip_224", n, pretrained="laion2b")``);
    ``pretrained=False`` leaves the random init (seeded by the caller's ``torch.manual_seed``; so is the head).
    ``image_size`` rebuilds the patch grid and resamples the pretrained position embeddings. For cheap
    parameter counting, build without weights under ``with torch.device("meta"):``.
    """
    family_name, arch, tag = _resolve(name)
    family = FAMILIES[family_name]
    tag = pretrained if isinstance(pretrained, str) else tag
    if (checkpoint is not None or pretrained) and torch.get_default_device().type == "meta":
        raise ValueError("weights cannot be loaded on the meta device; pass pretrained=False")
    weights: Path | str | Mapping[str, Tensor] | None = checkpoint
    if weights is None and pretrained:
        weights = family.weights(arch, tag)  # fetched before building, so that offline fails fast
    model = family.build(arch, tag, num_classes, image_size)
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def load_backbone_weights(model: VisionTransformer, weights: str | Path | Mapping[str, Tensor]) -> None:
    """Load every non-head tensor of ``model`` from a file or state dict; the head is left as it is.

    timm's ``checkpoint_filter_fn`` converts OpenAI / open_clip CLIP checkpoints (``visual.*`` keys) and
    resamples position embeddings; anything missing, unexpected or of the wrong shape is a ``CheckpointError``.
    """
    source = str(weights) if isinstance(weights, (str, Path)) else "state dict"
    state = _read_checkpoint(Path(weights)) if isinstance(weights, (str, Path)) else weights
    try:
        state = checkpoint_filter_fn(dict(state), model)
    except Exception as e:  # the converter fails on arbitrary malformed content
        raise CheckpointError(f"{source}: cannot be converted to a timm ViT ({type(e).__name__}: {e})") from e
    state = {k: v for k, v in state.items() if not _is_head(k)}
    expected = {k: v for k, v in model.state_dict().items() if not _is_head(k)}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    shapes = [f"{k} {_shape(state[k])} != {tuple(v.shape)}" for k, v in expected.items()
              if k in state and _shape(state[k]) != tuple(v.shape)]
    problems = [f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
                if items]
    if problems:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise CheckpointError(f"{source}: does not fit backbone {arch}: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)


def data_config(backbone: nn.Module | str) -> dict:
    """timm-style data config (``input_size``, ``mean``, ``std``, ``interpolation``, ...) of a backbone.

    A name is resolved by building the backbone on the meta device (no weights, no memory).
    """
    if isinstance(backbone, str):
        with torch.device("meta"):
            backbone = create_backbone(backbone, 1, pretrained=False)
    cfg = resolve_data_config(model=backbone)
    if isinstance(getattr(backbone, "patch_embed", None), nn.Module):
        cfg["input_size"] = (3, *backbone.patch_embed.img_size)
    return cfg


def _resolve(name: str) -> tuple[str, str, str | None]:
    """Name -> (family, arch, tag) through the alias and family registries."""
    spec = BACKBONES.get(name, name)
    family, sep, ref = spec.partition(":")
    if not sep or family not in FAMILIES or not ref:
        raise KeyError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)} or "
                       + ", ".join(f"{f}:<name>" for f in FAMILIES if f != "tiny"))
    return (family, *FAMILIES[family].parse(ref))


def _timm_name(arch: str, tag: str | None) -> str:
    return f"{arch}.{tag}" if tag else arch


def _is_head(key: str) -> bool:
    return in_modules(key, HEAD)


def _shape(value: object) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__


def _clip_pretrained_cfg(
    model: VisionTransformer, architecture: str, mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict:
    """The data-related part of a timm pretrained cfg for towers built outside ``timm.create_model``."""
    return dict(architecture=architecture, input_size=(3, *model.patch_embed.img_size), interpolation="bicubic",
                crop_pct=1.0, mean=tuple(mean or OPENAI_CLIP_MEAN), std=tuple(std or OPENAI_CLIP_STD),
                num_classes=model.num_classes, first_conv="patch_embed.proj", classifier="head")


def _read_checkpoint(path: Path) -> Mapping[str, Tensor]:
    """State dict of a .safetensors / torch pickle / TorchScript (OpenAI ``ViT-B-16.pt``) file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        if _is_torchscript(path):
            return torch.jit.load(str(path), map_location="cpu").state_dict()
        state = load_state_dict(str(path))  # timm: safetensors or weights-only torch.load, unwraps and cleans
    except Exception as e:  # truncated, corrupt or not a checkpoint at all
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


def _hub_file(repo_id: str, filenames: Sequence[str], what: str) -> Path:
    """First of ``filenames`` in hub repository ``repo_id`` (download or local cache).

    Without a connection the hub client retries for about a minute, so the hub is probed first and,
    if unreachable (or ``HF_HUB_OFFLINE`` is set), only the local cache is used.
    """
    offline = hf_constants.HF_HUB_OFFLINE or not _hub_reachable()
    errors = []
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id, filename, local_files_only=offline))
        except OSError as e:  # huggingface_hub's not-found, offline and HTTP errors are all OSErrors
            errors.append(f"{filename}: {type(e).__name__}")
    state = "the hub is unreachable and they are not in the local cache" if offline else "; ".join(errors)
    raise BackboneUnavailableError(
        f"pretrained weights for {what} could not be fetched ({state}). Download "
        f"{' or '.join(filenames)} from https://huggingface.co/{repo_id} (hf-hub:{repo_id}) and "
        f"{_CHECKPOINT_HINT}; for CLIP towers an OpenAI/open_clip CLIP checkpoint works too.")


def _hub_reachable() -> bool:
    request = urllib.request.Request(hf_constants.ENDPOINT, method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=HUB_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return True  # the server answered
    except (OSError, ValueError):
        return False
    return True
