"""Fixed-size baselines: full fine-tuning, linear probe, BitFit (Ben Zaken et al., ACL 2022)."""
from __future__ import annotations

from torch import nn

from .registry import PeftMethod, Recipe, freeze_all_but_head, register, train_only


@register("full")
class FullFineTuning(PeftMethod):
    """Every weight is trained; the fresh head in its own group at the head lr (a random head
    at the backbone's 3e-5 is starved)."""

    recipe = Recipe(lr=3e-5, source="benchmark: a pretrained ViT diverges at PEFT learning rates; head at head_lr")

    def attach(self, model: nn.Module, knob: None, calib) -> nn.Module:
        return model.requires_grad_(True)


@register("linear")
class LinearProbe(PeftMethod):
    """Only the classification head is trained (at the head lr; ``lr`` is unused)."""

    recipe = Recipe(drop_path=0.0, source="benchmark: head only, lr chosen on validation (head_lr)")

    def attach(self, model: nn.Module, knob: None, calib) -> nn.Module:
        return freeze_all_but_head(model)


@register("bitfit")
class BitFit(PeftMethod):
    """Every bias term of the backbone, plus the head (biases are kept out of weight decay, so
    the pretrained biases are not shrunk towards zero)."""

    def attach(self, model: nn.Module, knob: None, calib) -> nn.Module:
        return train_only(model, lambda name: name.endswith("bias"))
