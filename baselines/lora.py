"""LoRA (Hu et al., ICLR 2022) through Hugging Face ``peft``.

Each targeted ``nn.Linear`` W gets a trainable low-rank update (alpha / r) * B A with
A: r x in, B: out x r, B = 0 at init, so the adapted model starts as the frozen one.
``peft.inject_adapter_in_model`` swaps those layers for ``peft`` ``LoraLayer`` wrappers in
place: the model stays callable as ``model(images) -> logits`` and keeps ``head``; a wrapped
layer's frozen weight is renamed ``<layer>.base_layer.weight``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from shpeft import in_modules

from .registry import HEAD, PeftMethod, freeze_all_but_head, register

QKV = ("attn.qkv",)  # the fused query/key/value projection of every block (the anchors' setting)
ALL_LINEAR = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")  # every Linear of every block


@register("lora")
class LoRA(PeftMethod):
    """LoRA of rank ``rank`` on the layers named by ``targets`` (default: ``attn.qkv``).

    ``alpha`` stays fixed while the rank varies, as in the LoRA paper (Sec. 4.1: "we simply
    set alpha to the first r we try"), so the update scale alpha / r shrinks as r grows; the
    default alpha = 8 = native rank gives scale 1 at the native rank.
    """

    knob = "rank"
    native = 8

    def __init__(self, targets: Sequence[str] = QKV, alpha: float = 8.0) -> None:
        self.targets = tuple(targets)
        self.alpha = alpha

    def layers(self, model: nn.Module) -> dict[str, nn.Linear]:
        """The backbone ``nn.Linear`` modules whose names end with one of ``targets``."""
        found = {
            name: module
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear)
            and any(name == t or name.endswith("." + t) for t in self.targets)
            and not in_modules(name, HEAD)
        }
        if not found:
            raise ValueError(f"no nn.Linear matches the LoRA targets {self.targets}")
        return found

    def candidates(self, model: nn.Module) -> Sequence[int]:
        """Every rank from 1 to the smallest dimension of a targeted layer."""
        return range(1, min(min(m.in_features, m.out_features) for m in self.layers(model).values()) + 1)

    def count(self, model: nn.Module, knob: int) -> int:
        """r * (in + out) per targeted layer (A and B; peft adds no bias by default)."""
        return knob * sum(m.in_features + m.out_features for m in self.layers(model).values())

    def apply(self, model: nn.Module, knob: int, calib: Iterable | None) -> nn.Module:
        import peft  # imported on use: it pulls in transformers (~4 s), which most runs never need

        config = peft.LoraConfig(r=knob, lora_alpha=self.alpha, target_modules=sorted(self.layers(model)))
        model = peft.inject_adapter_in_model(config, model)
        freeze_all_but_head(model)
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.requires_grad_(True)
        return model
