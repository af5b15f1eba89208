"""VeRA: Vector-based Random Matrix Adaptation (Kopiczko et al., ICLR 2024) through Hugging Face
``peft`` (``peft.VeraConfig``).

Each targeted ``nn.Linear`` W gets the update diag(b) B diag(d) A x, where A (r x in) and B
(out x r) are random (Kaiming-uniform from ``projection_prng_key``), frozen and shared by all
targeted layers, and only the vectors b (out, zero at init, so the model starts as the frozen
one) and d (r, 0.1 at init: the paper's Table 6c) train: out + r per layer. peft keeps A and B
as buffers (a ``BufferDict`` every VeRA layer holds), never as parameters, so they are neither
trained nor counted in the ratio; the shared pair is sized for the largest targeted layer and
sliced per layer. The trained vectors and the key are all it takes to rebuild the update
(peft's ``save_projection`` also stores the pair; its default is kept).

The paper's ViT image classification adapts the query and value projections at r = 256 and
trains the head. Named deviations (also in docs/method.md): a timm ViT fuses q, k and v into
``attn.qkv``, so b here covers the key rows too (out = 3 x dim per layer, not 2 x dim over two
layers); the learning rate (1e-2) is set here, the paper's ViT values not being available; the
solver's ranks stop where A and B would hold more numbers than the weights they adapt.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from .lora import QKV, target_layers
from .registry import PeftMethod, Recipe, register, train_only

PRNG_KEY = 0  # peft's default projection_prng_key: A and B are the same in every run
D_INITIAL = 0.1  # d's initial value: the paper's Table 6c, peft's default


@register("vera")
class VeRA(PeftMethod):
    """VeRA of rank ``rank`` on the layers named by ``targets`` (default: the fused ``attn.qkv``)."""

    knob = "rank"
    native = 256  # the paper's rank for ViT-B / ViT-L
    recipe = Recipe(
        lr=1e-2,
        source="VeRA (Kopiczko et al., ICLR 2024) ViT image classification: query and value at r 256, head "
               "trained; lr 1e-2 (VeRA's vectors take larger steps than LoRA's matrices; the paper's ViT "
               "learning rates were not available here); otherwise the NOAH / SPT / PETL_Vision recipe",
        deviations="one VeRA on the fused qkv (the paper: query and value), so b also scales the key rows",
    )

    def __init__(self, targets: Sequence[str] = QKV, dropout: float = 0.0) -> None:
        self.targets, self.dropout = tuple(targets), dropout  # peft's vera_dropout default: 0

    def hparams(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "dropout": self.dropout, "d_initial": D_INITIAL,
                "projection_prng_key": PRNG_KEY}

    def layers(self, model: nn.Module) -> dict[str, nn.Linear]:
        return target_layers(model, self.targets)

    def candidates(self, model: nn.Module) -> Sequence[int]:
        """Ranks up to where the shared A and B would hold as many numbers as the weights they adapt."""
        layers = self.layers(model).values()
        weights = sum(m.weight.numel() for m in layers)
        widest = max(m.in_features for m in layers) + max(m.out_features for m in layers)
        return range(1, weights // widest + 1)

    def count(self, model: nn.Module, knob: int) -> int:
        """out + r per targeted layer (b and d)."""
        return sum(m.out_features + knob for m in self.layers(model).values())

    def attach(self, model: nn.Module, knob: int, calib: Iterable | None) -> nn.Module:
        import peft  # imported on use: it pulls in transformers (~4 s)

        config = peft.VeraConfig(
            r=knob, target_modules=sorted(self.layers(model)), vera_dropout=self.dropout, d_initial=D_INITIAL,
            projection_prng_key=PRNG_KEY,
        )
        # peft.inject_adapter_in_model refuses VeRA (the tuner holds the shared pair for saving and for
        # further adapters); every VeRA layer holds it too, so the adapted model runs without the tuner
        model = peft.VeraModel(model, config, adapter_name="default").model
        return train_only(model, lambda name: ".vera_lambda_" in name)
