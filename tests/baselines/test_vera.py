"""VeRA through HF peft (baselines/vera.py): the forward against W x + diag(b) B diag(d) A x
computed by hand, frozen shared projections that are buffers (not counted), the closed-form
count and the rank ceiling."""
from __future__ import annotations

import pytest
import torch
from peft.tuners.vera import VeraLayer

import baselines
from baselines.lora import ALL_LINEAR, QKV
from baselines.vera import VeRA
from shpeft import trainable_report
from tests.baselines.helpers import batch, tiny_vit, train_steps


def vera_layers(model: torch.nn.Module) -> dict[str, VeraLayer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, VeraLayer)}


@pytest.mark.parametrize("name", ["blocks.0.attn.qkv", "blocks.1.mlp.fc2"])
def test_update_is_b_times_shared_b_times_d_times_shared_a(name: str) -> None:
    """Brute force with random b and d; fc2 (32 -> 16) reads slices of the pair sized for fc1 / qkv."""
    layer = VeRA(ALL_LINEAR).attach(tiny_vit(), 5, None).eval().get_submodule(name)
    torch.manual_seed(3)
    with torch.no_grad():
        b, d = layer.vera_lambda_b["default"], layer.vera_lambda_d["default"]
        b.normal_(), d.normal_()
        a_shared, b_shared = layer.vera_A["default"], layer.vera_B["default"]
        assert a_shared.shape == (5, 32) and b_shared.shape == (48, 5)  # largest in / out of the targets
        w = layer.base_layer
        x = torch.randn(4, w.in_features)
        update = torch.diag(b) @ b_shared[: w.out_features] @ torch.diag(d) @ a_shared[:, : w.in_features]
        torch.testing.assert_close(layer(x), x @ (w.weight + update).T + w.bias, rtol=1e-5, atol=1e-5)


def test_projections_are_frozen_shared_buffers_and_only_b_d_train() -> None:
    x, y = batch()
    model = VeRA().attach(tiny_vit(), 4, None)
    layers = list(vera_layers(model).values())
    assert len(layers) == 2 and layers[0].vera_A is layers[1].vera_A and layers[0].vera_B is layers[1].vera_B
    assert not any("vera_A" in n or "vera_B" in n for n, _ in model.named_parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"blocks.{i}.attn.qkv.vera_lambda_{v}.default" for i in range(2) for v in "bd"} | {
        "head.weight", "head.bias"}
    projections = [t.clone() for t in (layers[0].vera_A["default"], layers[0].vera_B["default"])]
    train_steps(model, x, y)
    assert torch.equal(layers[0].vera_A["default"], projections[0])
    assert torch.equal(layers[0].vera_B["default"], projections[1])
    assert layers[0].vera_lambda_b["default"].abs().sum() > 0


def test_initialisation_b_zero_d_point_one_and_projections_from_the_key() -> None:
    first, second = (vera_layers(VeRA().attach(tiny_vit(seed), 4, None))["blocks.0.attn.qkv"] for seed in (0, 1))
    assert torch.equal(first.vera_lambda_b["default"], torch.zeros(48))
    assert torch.equal(first.vera_lambda_d["default"], torch.full((4,), 0.1))
    assert torch.equal(first.vera_A["default"], second.vera_A["default"])  # the same key, any model seed


@pytest.mark.parametrize("targets", [QKV, ALL_LINEAR])
@pytest.mark.parametrize("rank", [1, 4, 300])
def test_count_is_out_plus_rank_per_layer(targets: tuple[str, ...], rank: int) -> None:
    method = VeRA(targets)
    outs = {QKV: 2 * 48, ALL_LINEAR: 2 * (48 + 16 + 32 + 16)}[targets]
    expected = outs + len(targets) * 2 * rank
    assert method.count(tiny_vit(), rank) == expected
    assert trainable_report(method.attach(tiny_vit(), rank, None))["trainable_backbone"] == expected


def test_rank_ceiling_keeps_the_projections_no_larger_than_the_adapted_weights() -> None:
    ranks = VeRA().candidates(tiny_vit())
    assert ranks[-1] == (2 * 48 * 16) // (16 + 48)  # qkv weights / (in + out) of the shared pair
    prepared = baselines.prepare(baselines.get("vera"), tiny_vit(), 0.5)
    assert not prepared.reachable and prepared.knob_value == ranks[-1]
    assert baselines.prepare(baselines.get("vera"), tiny_vit()).knob_value == 256
