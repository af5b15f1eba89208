"""SSF: Scaling & Shifting your Features (Lian et al., NeurIPS 2022; reference code
github.com/dongzelian/SSF, ``models/vision_transformer.py``: ``init_ssf_scale_shift``, ``ssf_ada``).

A learnable per-channel scale and shift, ``y * scale + shift``, after every operation of SSF's
ViT: the patch embedding's projection, each block's qkv, attention proj, fc1 and fc2, and every
LayerNorm (norm1, norm2, the final norm). Scale starts at N(1, 0.02) and shift at N(0, 0.02), as
SSF's code, so the output moves slightly at initialisation. Only the scales, shifts and the head
train. Each affine follows a linear operation, so :func:`merge` folds it into that operation's
weight and bias after training.

Named deviation from dongzelian/SSF (also in docs/method.md): SSF's ViT has no ``norm_pre``
(CLIP towers) nor ``fc_norm`` (average pooling); here every LayerNorm of the backbone gets one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from shpeft import HEAD, in_modules

from .registry import PeftMethod, Recipe, register, train_only

INIT_STD = 0.02  # SSF's init_ssf_scale_shift: scale ~ N(1, 0.02), shift ~ N(0, 0.02)

# The operations SSF follows, with their output channels and the dimensions after the channel one.
OUTPUTS: dict[type[nn.Module], Callable[[nn.Module], tuple[int, int]]] = {
    nn.Linear: lambda m: (m.out_features, 0),
    nn.Conv2d: lambda m: (m.out_channels, 2),
    nn.LayerNorm: lambda m: (m.normalized_shape[-1], 0),
}


def output_layout(module: nn.Module) -> tuple[int, int] | None:
    """(channels, trailing dims) of an operation SSF follows, else None."""
    return next((f(module) for kind, f in OUTPUTS.items() if isinstance(module, kind)), None)


class ScaleShift(nn.Module):
    """``base(x) * ssf_scale + ssf_shift``, per output channel of a frozen ``base``."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        channels, self.trailing = output_layout(base)
        like = base.weight
        self.base = base
        self.ssf_scale = nn.Parameter(torch.empty(channels, device=like.device, dtype=like.dtype))
        self.ssf_shift = nn.Parameter(torch.empty(channels, device=like.device, dtype=like.dtype))
        nn.init.normal_(self.ssf_scale, mean=1.0, std=INIT_STD)
        nn.init.normal_(self.ssf_shift, mean=0.0, std=INIT_STD)

    def _per_channel(self, v: Tensor) -> Tensor:
        return v.view(-1, *(1,) * self.trailing)

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) * self._per_channel(self.ssf_scale) + self._per_channel(self.ssf_shift)

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """``base`` with the affine folded in: W <- scale * W (per output channel), b <- scale * b + shift."""
        weight = self.base.weight
        weight.mul_(self.ssf_scale.view(-1, *(1,) * (weight.ndim - 1)))
        if self.base.bias is None:
            self.base.bias = nn.Parameter(torch.zeros_like(self.ssf_shift), requires_grad=False)
        self.base.bias.mul_(self.ssf_scale).add_(self.ssf_shift)
        return self.base


def targets(model: nn.Module) -> dict[str, nn.Module]:
    """The backbone operations SSF follows: every Linear, Conv2d and LayerNorm outside the head."""
    return {n: m for n, m in model.named_modules() if output_layout(m) is not None and not in_modules(n, HEAD)}


def merge(model: nn.Module) -> nn.Module:
    """Fold every SSF affine into the operation before it and restore plain modules (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, ScaleShift):
            model.set_submodule(name, module.merged())
    return model


@register("ssf")
class SSF(PeftMethod):
    """SSF after every targeted operation; fixed size: 2 x the output channels of each."""

    recipe = Recipe(
        lr=5e-3, weight_decay=5e-5, drop_path=0.0,
        source="SSF (dongzelian/SSF) ViT-B/16 VTAB-1k scripts: AdamW, lr 5e-3, weight decay 5e-5, drop-path 0 "
               "(the modal setting; patch_camelyon's too)",
        deviations="every LayerNorm gets an SSF, also CLIP's norm_pre and fc_norm, which SSF's ViT lacks",
    )

    def hparams(self) -> dict[str, Any]:
        return {"init_std": INIT_STD, "after": sorted(kind.__name__ for kind in OUTPUTS)}

    def count(self, model: nn.Module, knob: None) -> int:
        return 2 * sum(output_layout(m)[0] for m in targets(model).values())

    def attach(self, model: nn.Module, knob: None, calib: Iterable | None) -> nn.Module:
        for name, module in targets(model).items():
            model.set_submodule(name, ScaleShift(module))
        return train_only(model, lambda n: n.endswith((".ssf_scale", ".ssf_shift")))
