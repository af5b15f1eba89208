"""The settings of one benchmark cell, defined once: :class:`RunConfig` (what to run) with a nested
:class:`TrainConfig` (how to train, as the user gave it), the resolved :class:`TrainSettings` (how the
cell trains: no ``None`` left), their command line, and :func:`validate`, which checks every name and
value before any data or model work starts.

The command line, the Snakemake DAG and ``--rerun`` all build a :class:`RunConfig` from flat
``name=value`` settings (:func:`from_flat`), so a default is written in one place: the dataclass.
torch-free: the checks that need torch or the registries import them when they run, so a bad
argument is reported before the heavy imports.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmark.cli import UserError
from benchmark.paths import run_relpath
from benchmark.values import NATIVE, RATIO_RANGE, is_finite, is_integer, is_ratio, parse_ratio


class ConfigError(UserError, ValueError):
    """A setting of a run is invalid. ``key`` is the setting's name; the message says its value and what
    is allowed. Shown as ``--flag: ...`` on the command line and as ``key: ...`` in a config file."""

    def __init__(self, detail: str, key: str | None = None):
        super().__init__(detail)
        self.detail, self.key = detail, key

    def __str__(self) -> str:
        return f"{flag(self.key)}: {self.detail}" if self.key else self.detail

    def in_file(self, where: str = "") -> str:
        """The message with the setting's config-file name (``train: epochs: ...``)."""
        return f"{where}{self.key}: {self.detail}" if self.key else f"{where}{self.detail}"


@dataclass(frozen=True)
class TrainConfig:
    """How to train, as given: the single home of every training default (the runner, its command line
    and the DAG configs read them from here). ``None`` means the method's reference recipe
    (``baselines.Recipe``); :func:`resolve_train` fills those in."""

    epochs: int = 20
    batch_size: int = 64
    lr: float | None = None  # the method's parameters; None = recipe x lr_scale
    head_lr: float | None = None  # the classification head; None = recipe x lr_scale (moved with an explicit lr)
    lr_scale: float = 1.0
    weight_decay: float | None = None  # decoupled (AdamW); never on the names passed as no_decay
    drop_path: float | None = None  # stochastic depth of the last block, linear from 0 over the blocks (timm's rule)
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    augment: bool = True
    compile: bool = False
    progress: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class TrainSettings:
    """How one cell trains, resolved from :class:`TrainConfig` and the method's recipe: what
    ``benchmark.train.fit`` takes and what a result records as its training ``hparams``."""

    epochs: int
    batch_size: int
    lr: float
    head_lr: float
    weight_decay: float
    drop_path: float
    warmup_epochs: float
    grad_clip: float
    augment: bool
    compile: bool
    progress: bool = field(default=True, compare=False)

    def record(self) -> dict[str, Any]:
        """The settings a result records (``progress`` is display only)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare}


class RecipeLike(Protocol):
    """What :func:`resolve_train` reads of a method's reference recipe (``baselines.Recipe``)."""

    lr: float
    head_lr: float
    weight_decay: float
    drop_path: float


def resolve_train(train: TrainConfig, recipe: RecipeLike) -> TrainSettings:
    """The training settings with every ``None`` taken from the method's reference recipe.

    The learning rates are the recipe's x ``lr_scale``; an explicit ``lr`` moves the head's lr with it
    (the recipe's head/method ratio kept) unless ``head_lr`` is given too, so an lr sweep also tunes
    the head, which is all a linear probe trains."""
    scale = train.lr_scale if train.lr is None else train.lr / recipe.lr
    given = {f.name: getattr(train, f.name) for f in dataclasses.fields(TrainSettings)}
    return TrainSettings(**{
        **given,
        "lr": recipe.lr * scale,
        "head_lr": recipe.head_lr * scale if train.head_lr is None else train.head_lr,
        "weight_decay": recipe.weight_decay if train.weight_decay is None else train.weight_decay,
        "drop_path": recipe.drop_path if train.drop_path is None else train.drop_path,
    })


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
    quiet: bool = field(default=False, compare=False)  # no per-epoch lines, no result path

    def identity(self) -> dict:
        """The fields that define the run (a rerun with equal identity is skipped)."""
        skip = {"force", "quiet", "out", "results_root", "device", "save_state"}
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


def from_recorded(recorded: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunConfig:
    """The config a result recorded (its flat ``config`` block), with ``overrides`` (data root,
    checkpoint, out, ...): a rerun of that cell."""
    settings = {k: v for k, v in recorded.items() if k != "identity"}
    return from_flat({**settings, "out": None, **overrides, "force": True})


def result_path(cfg: RunConfig) -> Path:
    """Where the cell's JSON goes: ``--out``, else the results tree (benchmark/paths.run_relpath)."""
    if cfg.out:
        return Path(cfg.out)
    return Path(cfg.results_root) / run_relpath(cfg.dataset, cfg.backbone, cfg.method, cfg.ratio, cfg.seed)


# --- validation: every check is cheap and runs before any data or model work -----------------------------

# name -> (predicate, what is allowed); None is allowed wherever the dataclass default is None.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: is_integer(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "ratio": (is_ratio, f"{RATIO_RANGE} or '{NATIVE}'"),
    "image_size": (lambda v: is_integer(v) and v >= 1, "a positive integer (pixels)"),
    "n_per_class": (lambda v: is_integer(v) and v >= 1, "a positive integer"),
    "calib_images": (lambda v: is_integer(v) and v >= 1, "a positive integer"),
    "epochs": (lambda v: is_integer(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: is_integer(v) and v >= 1, "an integer >= 1"),
    "lr": (lambda v: is_finite(v) and v > 0, "a positive number"),
    "lr_scale": (lambda v: is_finite(v) and v > 0, "a positive number"),
    "head_lr": (lambda v: is_finite(v) and v > 0, "a positive number"),
    "weight_decay": (lambda v: is_finite(v) and v >= 0, "a number >= 0"),
    "warmup_epochs": (lambda v: is_finite(v) and v >= 0, "a number >= 0"),
    "grad_clip": (lambda v: is_finite(v) and v > 0, "a positive number"),
    "drop_path": (lambda v: is_finite(v) and 0 <= v < 1, "a number in [0, 1)"),
    **{name: (lambda v: isinstance(v, bool), "true or false")
       for name in ("pretrained", "augment", "compile", "progress", "force", "quiet")},
    **{name: (lambda v: isinstance(v, str) and v != "", "a non-empty string")
       for name in ("dataset", "method", "backbone", "data_root", "device", "results_root")},
}


def _check_values(cfg: RunConfig) -> None:
    values = cfg.flat()
    for name, (ok, allowed) in RULES.items():
        if name in values and values[name] is not None and not ok(values[name]):
            raise ConfigError(f"got {values[name]!r}; expected {allowed}", name)
    if cfg.train.warmup_epochs > cfg.train.epochs:
        raise ConfigError(f"got {cfg.train.warmup_epochs}, more than epochs ({cfg.train.epochs})", "warmup_epochs")
    if cfg.checkpoint is not None:
        where = Path(cfg.checkpoint)
        if not where.exists():
            raise ConfigError(f"no such file {cfg.checkpoint!r}", "checkpoint")
        if not where.is_file():
            raise ConfigError(f"{cfg.checkpoint!r} is a folder; expected a weights file", "checkpoint")


def _check_names(cfg: RunConfig) -> None:
    import baselines
    from benchmark import data

    for key, lookup, name in (("method", baselines.get, cfg.method), ("dataset", data.get, cfg.dataset)):
        try:
            lookup(name)
        except KeyError as err:
            raise ConfigError(err.args[0], key) from None


def check_backbone(backbone: str, image_size: int | None) -> None:
    """The backbone name resolves, and the image size fits its patch grid (a meta-device build:
    no weights, no memory). Raises :class:`ConfigError`."""
    import torch

    from benchmark.backbones import create_backbone

    try:
        with torch.device("meta"):
            model = create_backbone(backbone, 2, pretrained=False)
    except KeyError as err:
        raise ConfigError(err.args[0], "backbone") from None
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if image_size is not None and patch is not None:
        step = patch[0] if isinstance(patch, Sequence) else patch
        if image_size < step or image_size % step:
            raise ConfigError(f"got {image_size}; {backbone} needs a multiple of its patch size {step}", "image_size")


def check_device(name: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` that exists here. Raises :class:`ConfigError`."""
    import torch

    try:
        device = torch.device("cpu" if name == "auto" else name)
    except RuntimeError:
        raise ConfigError(f"got {name!r}; expected auto, cpu, cuda or cuda:N", "device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"got {name!r} but no CUDA device is available", "device")


def check_output(path: Path, key: str) -> None:
    """``path`` can be written as a file: not a folder, and its nearest existing folder is writable.
    Creates nothing (an interrupted run leaves no empty folders)."""
    if path.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder; expected a file path", key)
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{str(folder)!r} is a file, so {str(path)!r} cannot be created", key)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {str(folder)!r} (permission denied)", key)


def _check_paths(cfg: RunConfig) -> None:
    root = Path(cfg.data_root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{cfg.data_root!r} is a file; expected a folder", "data_root")
    check_output(result_path(cfg), "out" if cfg.out else "results_root")
    if cfg.save_state:
        check_output(Path(cfg.save_state), "save_state")
        if Path(cfg.save_state).resolve() == result_path(cfg).resolve():
            raise ConfigError(f"{cfg.save_state!r} is also the result path", "save_state")


def validate_values(cfg: RunConfig) -> None:
    """The settings' values and the backbone/image-size pair (what a study config shares by all its cells)."""
    _check_values(cfg)
    check_backbone(cfg.backbone, cfg.image_size)


def validate(cfg: RunConfig) -> None:
    """Every check that needs no data and no weights: values, names, backbone/image size, device,
    writable destinations. Raises :class:`ConfigError`."""
    _check_values(cfg)
    _check_paths(cfg)
    _check_names(cfg)
    check_device(cfg.device)
    check_backbone(cfg.backbone, cfg.image_size)


# --- command line: one flag per field, generated from the dataclasses -----------------------------------

def ratio_arg(text: str) -> float | None:
    """``--ratio``: a number in (0, 1] or ``native`` (the message keeps the text as typed)."""
    try:
        return parse_ratio(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_bool(text: str) -> bool:
    if text.lower() not in {"true", "false", "1", "0", "yes", "no"}:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected true or false")
    return text.lower() in {"true", "1", "yes"}


def _number(kind: type, allowed: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected {allowed}") from None

    return parse


_PARSERS = {int: _number(int, "an integer"), float: _number(float, "a number"), str: str, bool: parse_bool}
_SWITCHES = {"force": "rerun even if finished", "progress": "show progress bars",
             "quiet": "print neither the per-epoch validation scores nor the result path"}

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
        default = f.default  # no flag field has a default_factory (only `train`, which is flattened)
        if f.name in _SWITCHES:
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None,
                                help=f"{_SWITCHES[f.name]} (default: {default})")
            continue
        kind = ratio_arg if f.name == "ratio" else _PARSERS[_base_type(hints[f.name])]
        if default is dataclasses.MISSING:
            parser.add_argument(flag(f.name), required=required, type=kind, default=None, help=HELP.get(f.name))
        else:
            parser.add_argument(flag(f.name), type=kind, default=None,
                                help=f"{HELP.get(f.name, '')} (default: {default})".strip())


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave on the command line (flags left unset are None)."""
    names = set(RUN_FIELDS) | set(TRAIN_FIELDS)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def flag(name: str) -> str:
    """A setting's command-line flag: ``warmup_epochs`` -> ``--warmup-epochs``."""
    return "--" + name.replace("_", "-")
