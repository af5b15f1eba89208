"""One registry of PEFT methods, and the solver that matches their trainable-weight ratios.

A method is a :class:`PeftMethod` instance registered under a name. It has one size knob
(LoRA rank, prompt length, adapter width, k, ...) or none (full, linear, BitFit). Given a
target ratio, :func:`prepare` picks the knob whose achieved ratio is closest in log space,
applies the method, and reports target vs achieved ratio; a ratio a method cannot reach
within ``TOLERANCE`` is reported as unreachable, never silently shifted.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from shpeft import HEAD, in_modules, num_backbone_parameters, trainable_report

TOLERANCE = 0.10  # relative distance between achieved and target ratio that still counts as matched

TOKENS = ("cls_token", "reg_token", "dist_token", "pos_embed")  # timm ViT's no_weight_decay() set
HEAD_LR = 1e-2  # the fresh head's learning rate: chosen on validation macro-F1 (docs/method.md, Baselines)

_REGISTRY: dict[str, PeftMethod] = {}


@dataclass(frozen=True)
class Recipe:
    """How a method is trained, as its authors train it (``source``), adapted to the benchmark.

    The default is the VTAB-1k recipe for ViT-B/16 shared by NOAH, SPT and PETL_Vision: AdamW,
    lr 1e-3, weight decay 1e-4, drop-path 0.1 (100 epochs with 10 of warm-up there; the epochs
    are the benchmark's). Weight decay never applies to 1-D tensors (biases, norms, sparse
    deltas) nor to the method's token parameters (prompts, cls_token), as in timm, adapter-bert
    and VPT. ``head_lr`` is the benchmark's: the references train the head at ``lr`` for 100
    epochs; in our 10-20 a fresh head at 1e-3 stays near the majority class.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    head_lr: float = HEAD_LR
    drop_path: float = 0.1
    source: str = "NOAH / SPT / PETL_Vision VTAB-1k recipe for ViT-B/16 (AdamW, lr 1e-3, wd 1e-4, drop-path 0.1)"
    deviations: str = ""  # where the implementation knowingly departs from the source (shown under the tables)

    def asdict(self) -> dict[str, Any]:
        """A plain JSON-able dict (the ``recipe`` block of a result JSON)."""
        return dataclasses.asdict(self)


class PeftMethod:
    """A PEFT method with (at most) one size knob. Subclasses implement :meth:`attach`."""

    knob: ClassVar[str | None] = None  # name of the size knob; None = fixed size
    native: ClassVar[Any] = None  # knob value of the method's own paper (used when ratio=None)
    needs_data: ClassVar[bool] = False  # attach() reads the calibration loader
    recipe: ClassVar[Recipe] = Recipe()  # training settings of the method's reference code
    no_decay_names: ClassVar[tuple[str, ...]] = TOKENS  # multi-dim trainable tensors kept out of weight decay
    name: str = ""  # set by register()

    def attach(self, model: nn.Module, knob: Any, calib: Iterable | None) -> nn.Module:
        """Adapt ``model`` in place (or return a new one): only the method's parameters and the
        head require grad; at knob's size."""
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        """The method's own hyper-parameters (scale, dropout, targets, ...), JSON-able."""
        return {}

    def no_decay(self, name: str, param: nn.Parameter) -> bool:
        """Whether the trainable ``param`` is kept out of weight decay: every 1-D tensor (biases,
        norm affines, sparse deltas) and the names in ``no_decay_names`` (tokens, prompts)."""
        return param.ndim <= 1 or name.rpartition(".")[2] in self.no_decay_names

    def default_knob(self, model: nn.Module, backbone: int) -> Any:
        """Knob used when no ratio is asked for: the method's own paper's setting."""
        return self.native

    def candidates(self, model: nn.Module) -> Sequence[Any]:
        """Knob values the solver may choose from, in increasing size."""
        return [self.native]

    def count(self, model: nn.Module, knob: Any) -> int:
        """Trainable backbone parameters at ``knob`` (default: apply to a copy and count)."""
        clone = self.attach(copy.deepcopy(model), knob, None)
        return int(trainable_report(clone, head=HEAD)["trainable_backbone"])

    def solve(self, model: nn.Module, ratio: float, backbone: int) -> Any:
        """The candidate knob whose ratio is closest to ``ratio`` in log space."""
        best, best_gap = None, math.inf
        for knob in self.candidates(model):
            n = self.count(model, knob)
            gap = abs(math.log(max(n, 1) / (ratio * backbone)))
            if gap < best_gap:
                best, best_gap = knob, gap
            elif n > ratio * backbone:
                break  # counts grow with the knob: past the target nothing gets closer
        return best


def register(name: str, method: PeftMethod | None = None) -> Callable | PeftMethod:
    """Register ``method`` under ``name``; usable as a class decorator (no-argument classes)."""

    def add(obj):
        instance = obj() if isinstance(obj, type) else obj
        if name in _REGISTRY:
            raise ValueError(f"PEFT method {name!r} is registered twice")
        instance.name = name
        _REGISTRY[name] = instance
        return obj

    return add(method) if method is not None else add


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> PeftMethod:
    if name not in _REGISTRY:
        raise KeyError(f"unknown PEFT method {name!r}; registered methods: {', '.join(names())}")
    return _REGISTRY[name]


def freeze_all_but_head(model: nn.Module, head: Sequence[str] = HEAD) -> nn.Module:
    """requires_grad False everywhere except the classification head."""
    model.requires_grad_(False)
    for h in head:
        model.get_submodule(h).requires_grad_(True)
    return model


def train_only(model: nn.Module, keep: Callable[[str], bool], head: Sequence[str] = HEAD) -> nn.Module:
    """Freeze everything, then train the head and every parameter whose name ``keep`` accepts."""
    freeze_all_but_head(model, head)
    for name, p in model.named_parameters():
        if keep(name):
            p.requires_grad_(True)
    return model


@dataclass
class Prepared:
    """A model ready to train under one method at one budget, and how the budget was met."""

    model: nn.Module
    method: str
    knob: str | None
    knob_value: Any
    target_ratio: float | None
    achieved_ratio: float
    trainable: int
    backbone_params: int
    head_params: int
    reachable: bool
    note: str
    hparams: dict[str, Any] = field(default_factory=dict)  # the method's own hyper-parameters
    no_decay: frozenset[str] = frozenset()  # trainable parameter names kept out of weight decay

    def budget(self) -> dict[str, Any]:
        """The ``budget`` block of a result JSON."""
        return {
            "target_ratio": self.target_ratio,
            "achieved_ratio": self.achieved_ratio,
            "trainable": self.trainable,
            "backbone_params": self.backbone_params,
            "head_params": self.head_params,
            "knob": self.knob,
            "knob_value": self.knob_value,
            "reachable": self.reachable,
            "tolerance": TOLERANCE,
            "note": self.note,
        }


def prepare(
    method: PeftMethod, model: nn.Module, ratio: float | None = None, calib: Iterable | None = None
) -> Prepared:
    """Adapt ``model`` with ``method`` (from :func:`get`) at the trainable ratio ``ratio``
    (None = native size).

    The ratio is trainable backbone parameters / backbone parameters (head excluded: it is
    always trained and reported as ``head_params``).
    """
    name = method.name
    if ratio is not None and not (0 < ratio <= 1):
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    if method.needs_data and calib is None:
        raise ValueError(f"method {name!r} needs a calibration data loader")
    backbone = num_backbone_parameters(model, HEAD)
    knob = method.default_knob(model, backbone) if ratio is None else method.solve(model, ratio, backbone)
    if ratio is not None and not matches(method.count(model, knob) / backbone, ratio):
        return _unreachable(method, model, ratio, knob, method.count(model, knob), backbone)  # nothing attached
    model = method.attach(model, knob, calib)
    report = trainable_report(model, head=HEAD, backbone_params=backbone)
    if ratio is not None and not matches(report["ratio"], ratio):
        return _unreachable(method, model, ratio, knob, report["trainable_backbone"], backbone)
    return Prepared(
        model=model, method=name, knob=method.knob, knob_value=knob, target_ratio=ratio,
        achieved_ratio=report["ratio"], trainable=report["trainable"], backbone_params=backbone,
        head_params=report["head_params"], reachable=True, note="", hparams=method.hparams(),
        no_decay=no_decay_names(method, model),
    )


def matches(achieved: float, target: float) -> bool:
    """Whether an achieved ratio meets a target one: within ``TOLERANCE`` of it, relatively."""
    return abs(achieved / target - 1) <= TOLERANCE


def _unreachable(method: PeftMethod, model: nn.Module, ratio: float, knob: Any, trainable_backbone: int,
                 backbone: int) -> Prepared:
    """The record of a ratio ``method`` cannot reach: the closest it gets, at which knob."""
    achieved = trainable_backbone / backbone
    knob_text = f" ({method.knob}={knob})" if method.knob else ""
    head = sum(p.numel() for n, p in model.named_parameters() if in_modules(n, HEAD))
    return Prepared(
        model=model, method=method.name, knob=method.knob, knob_value=knob, target_ratio=ratio,
        achieved_ratio=achieved, trainable=trainable_backbone + head, backbone_params=backbone, head_params=head,
        reachable=False, note=f"{method.name} cannot reach ratio {ratio:.3g}: the closest it gets is {achieved:.3g}{knob_text}",
        hparams=method.hparams(),
    )


def no_decay_names(method: PeftMethod, model: nn.Module) -> frozenset[str]:
    """The trainable parameters of ``model`` that ``method`` keeps out of weight decay."""
    return frozenset(n for n, p in model.named_parameters() if p.requires_grad and method.no_decay(n, p))
