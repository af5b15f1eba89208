"""DoRA through HF peft (baselines/dora.py): the magnitude/direction forward against the formula
computed by hand, the magnitude's initialisation, and the closed-form count."""
from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

import baselines
from baselines.dora import DoRA
from baselines.lora import ALL_LINEAR, QKV, LoRA
from shpeft import trainable_report
from tests.baselines.helpers import tiny_vit


def test_targets_are_loras_with_one_magnitude_per_output_row() -> None:
    model = DoRA().attach(tiny_vit(), 2, None)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert set(layers) == {f"blocks.{i}.attn.qkv" for i in range(2)}
    for layer in layers.values():
        magnitude = layer.lora_magnitude_vector["default"].weight
        assert magnitude.requires_grad and magnitude.shape == (48,)
        torch.testing.assert_close(magnitude, layer.base_layer.weight.norm(dim=1))  # m = ||W||_c at init


def test_update_is_magnitude_times_normalised_direction() -> None:
    """Brute force (eval: no dropout): m * (W + s B A) / ||W + s B A||_row applied to x, plus the bias."""
    layer = DoRA(scale=2.0).attach(tiny_vit(), 3, None).eval().blocks[0].attn.qkv
    torch.manual_seed(3)
    with torch.no_grad():
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        magnitude = layer.lora_magnitude_vector["default"].weight
        for p in (a, b, magnitude):
            p.normal_()
        x = torch.randn(4, 16)
        direction = layer.base_layer.weight + 2.0 * b @ a
        weight = magnitude[:, None] * direction / direction.norm(dim=1, keepdim=True)
        torch.testing.assert_close(layer(x), x @ weight.T + layer.base_layer.bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("targets", [QKV, ALL_LINEAR])
@pytest.mark.parametrize("rank", [1, 3])
def test_count_is_loras_plus_the_output_rows(targets: tuple[str, ...], rank: int) -> None:
    method, model = DoRA(targets), tiny_vit()
    magnitudes = sum(m.out_features for m in method.layers(model).values())
    assert method.count(model, rank) == LoRA(targets).count(model, rank) + magnitudes
    assert trainable_report(method.attach(model, rank, None))["trainable_backbone"] == method.count(tiny_vit(), rank)


def test_registered_with_loras_settings_and_use_dora() -> None:
    prepared = baselines.prepare(baselines.get("dora"), tiny_vit())
    assert (prepared.knob, prepared.knob_value) == ("rank", 8)
    assert prepared.hparams == {**LoRA().hparams(), "use_dora": True}
    assert {n for n in prepared.no_decay if "magnitude" in n} == {
        f"blocks.{i}.attn.qkv.lora_magnitude_vector.default.weight" for i in range(2)
    }
