"""The settings of one benchmark cell, defined once: :class:`RunConfig` (what to run) with a nested
:class:`~benchmark.train.TrainConfig` (how to train), their command line, and :func:`validate`, which
checks every name and value before any data or model work starts.

The command line, the Snakemake DAG and ``--rerun`` all build a :class:`RunConfig` from flat
``name=value`` settings (:func:`from_flat`), so a default is written in one place: the dataclass.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.paths import NATIVE, run_relpath
from shpeft.select import is_integer, is_real
from benchmark.train import TrainConfig


class ConfigError(ValueError):
    """A setting of a run is invalid; the message names the setting, its value and what is allowed."""


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    method: str
    backbone: str = "clip_vit_b16"
    ratio: float | None = None  # trainable backbone weights / backbone weights; None = method's native size
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    image_size: int | None = None  # None = the backbone's input size
    n_per_class: int | None = None  # data-scarce setting: this many training images per class
    calib_images: int = 1000  # size of the class-stratified calibration sample of data-driven methods
    pretrained: bool = True
    checkpoint: str | None = None
    data_root: str = "data"
    device: str = "auto"
    out: str | None = None
    save_state: str | None = None  # write the trained weights here (safetensors)
    results_root: str = "results/runs"
    force: bool = field(default=False, compare=False)

    def identity(self) -> dict:
        """The fields that define the run (a rerun with equal identity is skipped)."""
        skip = {"force", "out", "results_root", "device", "save_state"}
        ident = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        ident["train"] = {f.name: getattr(self.train, f.name) for f in dataclasses.fields(TrainConfig) if f.compare}
        return ident

    def flat(self) -> dict[str, Any]:
        """Every setting as one flat ``{name: value}`` map (the inverse of :func:`from_flat`)."""
        top = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train"}
        return {**top, **dataclasses.asdict(self.train)}


RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "train")
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def from_flat(settings: Mapping[str, Any]) -> RunConfig:
    """A :class:`RunConfig` from flat ``{name: value}`` settings (run and training fields mixed);
    unknown names are a :class:`ConfigError` listing the valid ones."""
    unknown = sorted(set(settings) - set(RUN_FIELDS) - set(TRAIN_FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(RUN_FIELDS + TRAIN_FIELDS)}")
    train = TrainConfig(**{k: v for k, v in settings.items() if k in TRAIN_FIELDS})
    return RunConfig(**{k: v for k, v in settings.items() if k in RUN_FIELDS}, train=train)


def result_path(cfg: RunConfig) -> Path:
    """Where the cell's JSON goes: ``--out``, else the results tree (benchmark/paths.run_relpath)."""
    if cfg.out:
        return Path(cfg.out)
    return Path(cfg.results_root) / run_relpath(cfg.dataset, cfg.backbone, cfg.method, cfg.ratio, cfg.seed)


# --- validation: every check is cheap and runs before any data or model work -----------------------------

def _is_finite(v: object) -> bool:
    return is_real(v) and math.isfinite(float(v))


# name -> (predicate, what is allowed); None is allowed wherever the dataclass default is None.
RULES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "seed": (lambda v: is_integer(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "ratio": (lambda v: _is_finite(v) and 0 < v <= 1, f"a number in (0, 1] or '{NATIVE}'"),
    "image_size": (lambda v: is_integer(v) and v >= 1, "a positive integer (pixels)"),
    "n_per_class": (lambda v: is_integer(v) and v >= 1, "a positive integer"),
    "calib_images": (lambda v: is_integer(v) and v >= 1, "a positive integer"),
    "epochs": (lambda v: is_integer(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: is_integer(v) and v >= 1, "an integer >= 1"),
    "lr": (lambda v: _is_finite(v) and v > 0, "a positive number"),
    "lr_scale": (lambda v: _is_finite(v) and v > 0, "a positive number"),
    "head_lr": (lambda v: _is_finite(v) and v > 0, "a positive number"),
    "weight_decay": (lambda v: _is_finite(v) and v >= 0, "a number >= 0"),
    "warmup_epochs": (lambda v: _is_finite(v) and v >= 0, "a number >= 0"),
    "grad_clip": (lambda v: _is_finite(v) and v > 0, "a positive number"),
    "drop_path": (lambda v: _is_finite(v) and 0 <= v < 1, "a number in [0, 1)"),
}


def _check_values(cfg: RunConfig) -> None:
    values = cfg.flat()
    for name, (ok, allowed) in RULES.items():
        if name in values and values[name] is not None and not ok(values[name]):
            raise ConfigError(f"{_flag(name)}: got {values[name]!r}; expected {allowed}")
    if cfg.train.warmup_epochs > cfg.train.epochs:
        raise ConfigError(f"--warmup-epochs: got {cfg.train.warmup_epochs}, more than --epochs {cfg.train.epochs}")
    if cfg.checkpoint is not None and not Path(cfg.checkpoint).is_file():
        raise ConfigError(f"--checkpoint: no such file {cfg.checkpoint!r}")


def _check_names(cfg: RunConfig) -> None:
    import baselines
    from benchmark import data

    for flag, lookup, name in (("--method", baselines.get, cfg.method), ("--dataset", data.get, cfg.dataset)):
        try:
            lookup(name)
        except KeyError as err:
            raise ConfigError(f"{flag}: {err.args[0]}") from None


def _check_backbone(cfg: RunConfig) -> None:
    """The backbone name resolves, and the image size fits its patch grid (a meta-device build:
    no weights, no memory)."""
    from benchmark.backbones import create_backbone

    try:
        with torch.device("meta"):
            model = create_backbone(cfg.backbone, 2, pretrained=False)
    except KeyError as err:
        raise ConfigError(f"--backbone: {err.args[0]}") from None
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if cfg.image_size is not None and patch is not None:
        step = patch[0] if isinstance(patch, Sequence) else patch
        if cfg.image_size < step or cfg.image_size % step:
            raise ConfigError(f"--image-size: got {cfg.image_size}; {cfg.backbone} needs a multiple of its "
                              f"patch size {step}")


def _check_device(cfg: RunConfig) -> None:
    try:
        device = torch.device("cpu" if cfg.device == "auto" else cfg.device)
    except RuntimeError:
        raise ConfigError(f"--device: got {cfg.device!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device: got {cfg.device!r} but no CUDA device is available")


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and write a probe file in it, so a read-only destination fails now, not
    after hours of training."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"{what}: cannot write to {folder} ({err.strerror})") from None


def validate_values(cfg: RunConfig) -> None:
    """The settings' values and the backbone/image-size pair (what a study config shares by all its cells)."""
    _check_values(cfg)
    _check_backbone(cfg)


def validate(cfg: RunConfig) -> None:
    """Every check that needs no data and no weights: values, names, backbone/image size, device,
    writable destinations. Raises :class:`ConfigError`."""
    validate_values(cfg)
    _check_names(cfg)
    _check_device(cfg)
    check_writable(result_path(cfg).parent, "--out" if cfg.out else "--results-root")
    if cfg.save_state:
        check_writable(Path(cfg.save_state).parent, "--save-state")


# --- command line: one flag per field, generated from the dataclasses -----------------------------------

def parse_ratio(text: str) -> float | None:
    return None if text == NATIVE else float(text)


def parse_bool(text: str) -> bool:
    if text.lower() not in {"true", "false", "1", "0", "yes", "no"}:
        raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
    return text.lower() in {"true", "1", "yes"}


_PARSERS = {int: int, float: float, str: str, bool: parse_bool}
_SWITCHES = {"force": "rerun even if finished", "progress": "show progress bars"}

HELP = {
    "dataset": "dataset name from the registry (python -m benchmark.data list) or folder:<path>",
    "method": "PEFT method from the baselines registry",
    "backbone": "backbone name (clip_vit_b16, tiny_vit, timm:<name>, open_clip:<arch>/<tag>)",
    "ratio": f"target trainable ratio of backbone weights in (0, 1], or '{NATIVE}' for the method's own size",
    "lr": "learning rate of the method's parameters (default: the method's recipe x --lr-scale)",
    "head_lr": "learning rate of the classification head (default: the method's recipe x --lr-scale, or "
               "moved with --lr: the recipe's head/method ratio kept)",
    "lr_scale": "multiply the method's recipe learning rates (e.g. for a small random-init model)",
    "weight_decay": "AdamW weight decay (default: the method's recipe); never on biases, norms, prompts",
    "drop_path": "stochastic depth rate of the last block (default: the method's recipe)",
    "image_size": "input size (default: the backbone's)",
    "n_per_class": "use only this many training images per class (data-scarce setting)",
    "calib_images": "images in the class-stratified calibration sample of data-driven methods",
    "checkpoint": "local weights file for the backbone (offline use)",
    "save_state": "also write the trained weights (safetensors) to this path",
    "out": "result JSON path (default: <results-root>/<dataset>/<backbone>/<method>/r<ratio>/s<seed>.json)",
    "device": "auto, cpu, cuda, cuda:N",
}


def _base_type(annotation: Any) -> type:
    """``int | None`` -> int."""
    if isinstance(annotation, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """One ``--flag`` per field of :class:`RunConfig` and :class:`TrainConfig` (defaults from the
    dataclasses; unset flags stay None so only what the user gave is applied)."""
    hints = {**typing.get_type_hints(RunConfig), **typing.get_type_hints(TrainConfig)}
    fields = [f for f in dataclasses.fields(RunConfig) if f.name != "train"] + list(dataclasses.fields(TrainConfig))
    for f in fields:
        flag = _flag(f.name)
        default = f.default  # no flag field has a default_factory (only `train`, which is flattened)
        if f.name in _SWITCHES:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{_SWITCHES[f.name]} (default: {default})")
            continue
        kind = parse_ratio if f.name == "ratio" else _PARSERS[_base_type(hints[f.name])]
        if default is dataclasses.MISSING:
            parser.add_argument(flag, required=required, type=kind, default=None, help=HELP.get(f.name))
        else:
            parser.add_argument(flag, type=kind, default=None,
                                help=f"{HELP.get(f.name, '')} (default: {default})".strip())


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave on the command line (flags left unset are None)."""
    names = set(RUN_FIELDS) | set(TRAIN_FIELDS)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
