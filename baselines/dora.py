"""DoRA: Weight-Decomposed Low-Rank Adaptation (Liu et al., ICML 2024) through Hugging Face ``peft``
(``LoraConfig(use_dora=True)``).

Each targeted weight is split into a magnitude m (the norm of each output row, m = ||W||_c at
init) and a direction that LoRA updates: W' = m (W + s B A) / ||W + s B A||_c. m, A and B train;
B = 0 at init, so the adapted model starts as the frozen one. As in the paper (Sec. 4.3) and
peft, the norm is a constant in the backward pass. Everything else is the project's
:class:`~baselines.lora.LoRA`: targets (the fused ``attn.qkv``), scale 1, input dropout 0.1.

DoRA's experiments (LLaMA commonsense reasoning, VL-BART, LLaVA) give no ViT recipe, so the
LoRA baseline's settings stand in (a named deviation, also in docs/method.md).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .lora import LoRA
from .registry import Recipe, register


@register("dora")
class DoRA(LoRA):
    """DoRA of rank ``rank`` on LoRA's targets: LoRA's A and B plus one magnitude per output row."""

    use_dora = True
    recipe = Recipe(
        source="the project's LoRA (PETL_Vision LoRA, NOAH / SPT / PETL_Vision VTAB-1k recipe): DoRA publishes "
               "no ViT image-classification setting",
        deviations="targets, scale and dropout are the LoRA baseline's (DoRA has no ViT recipe)",
    )

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "use_dora": True}

    def count(self, model: nn.Module, knob: int) -> int:
        """LoRA's r * (in + out) per targeted layer, plus its out magnitudes."""
        return super().count(model, knob) + sum(m.out_features for m in self.layers(model).values())
