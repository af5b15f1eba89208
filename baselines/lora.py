"""LoRA (Hu et al., ICLR 2022) through Hugging Face ``peft``.

Each targeted ``nn.Linear`` W gets a trainable low-rank update s * B A(dropout(x)) with
A: r x in, B: out x r, B = 0 at init, so the adapted model starts as the frozen one.
``peft.inject_adapter_in_model`` swaps those layers for ``peft`` ``LoraLayer`` wrappers in
place: the model stays callable as ``model(images) -> logits`` and keeps ``head``; a wrapped
layer's frozen weight is renamed ``<layer>.base_layer.weight``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from torch import nn

from shpeft import HEAD, in_modules

from .registry import PeftMethod, register, train_only

QKV = ("attn.qkv",)  # the fused query/key/value projection of every block (the anchors' setting)
ALL_LINEAR = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")  # every Linear of every block


def target_layers(model: nn.Module, targets: Sequence[str]) -> dict[str, nn.Linear]:
    """The backbone ``nn.Linear`` modules whose names end with one of ``targets``."""
    found = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and any(name == t or name.endswith("." + t) for t in targets)
        and not in_modules(name, HEAD)
    }
    if not found:
        raise ValueError(f"no nn.Linear matches the targets {tuple(targets)}")
    return found


@register("lora")
class LoRA(PeftMethod):
    """LoRA of rank ``rank`` on the layers named by ``targets`` (default: ``attn.qkv``).

    The update scale is ``scale`` at every rank (default 1 and input dropout 0.1, as
    PETL_Vision's LoRA), so the ratio sweep changes the size, not the step size. ``alpha``
    switches to the LoRA paper's scale alpha / r with alpha fixed while r varies (Sec. 4.1).
    """

    knob = "rank"
    native = 8
    use_dora: ClassVar[bool] = False  # peft's weight-decomposed variant (DoRA, baselines/dora.py)

    def __init__(
        self, targets: Sequence[str] = QKV, scale: float = 1.0, alpha: float | None = None, dropout: float = 0.1
    ) -> None:
        self.targets = tuple(targets)
        self.scale, self.alpha, self.dropout = scale, alpha, dropout

    def hparams(self) -> dict[str, Any]:
        scale = "alpha / rank" if self.alpha is not None else self.scale
        return {"targets": list(self.targets), "scale": scale, "alpha": self.alpha, "dropout": self.dropout}

    def lora_alpha(self, rank: int) -> float:
        """peft's ``lora_alpha`` (peft scales by lora_alpha / r)."""
        return self.alpha if self.alpha is not None else self.scale * rank

    def layers(self, model: nn.Module) -> dict[str, nn.Linear]:
        return target_layers(model, self.targets)

    def candidates(self, model: nn.Module) -> Sequence[int]:
        """Every rank from 1 to the smallest dimension of a targeted layer."""
        return range(1, min(min(m.in_features, m.out_features) for m in self.layers(model).values()) + 1)

    def count(self, model: nn.Module, knob: int) -> int:
        """r * (in + out) per targeted layer (A and B; peft adds no bias by default)."""
        return knob * sum(m.in_features + m.out_features for m in self.layers(model).values())

    def attach(self, model: nn.Module, knob: int, calib: Iterable | None) -> nn.Module:
        import peft  # imported on use: it pulls in transformers (~4 s), which most runs never need

        config = peft.LoraConfig(
            r=knob, lora_alpha=self.lora_alpha(knob), lora_dropout=self.dropout,
            target_modules=sorted(self.layers(model)), use_dora=self.use_dora,
        )
        model = peft.inject_adapter_in_model(config, model)
        return train_only(model, lambda name: ".lora_" in name)
