"""Fixed-size baselines: full fine-tuning, linear probe, BitFit (Ben Zaken et al., ACL 2022)."""
from __future__ import annotations

from torch import nn

from .registry import PeftMethod, freeze_all_but_head, register


@register("full")
class FullFineTuning(PeftMethod):
    """Every weight is trained."""

    lr = 3e-5  # a pretrained ViT diverges at PEFT learning rates

    def apply(self, model: nn.Module, knob: None, calib) -> nn.Module:
        return model.requires_grad_(True)


@register("linear")
class LinearProbe(PeftMethod):
    """Only the classification head is trained."""

    def apply(self, model: nn.Module, knob: None, calib) -> nn.Module:
        return freeze_all_but_head(model)


@register("bitfit")
class BitFit(PeftMethod):
    """Every bias term of the backbone, plus the head."""

    def apply(self, model: nn.Module, knob: None, calib) -> nn.Module:
        freeze_all_but_head(model)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.requires_grad_(True)
        return model
