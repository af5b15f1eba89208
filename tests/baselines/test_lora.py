"""LoRA through HF peft (baselines/lora.py): identity at init, what trains, analytic counts,
and the ratios it reaches on ViT-B/16."""
from __future__ import annotations

import copy

import pytest
import timm
import torch
from peft.tuners.lora import LoraLayer

import baselines
from baselines.lora import ALL_LINEAR, QKV, LoRA
from shpeft import num_backbone_parameters, trainable_report
from tests.baselines.helpers import batch, tiny_vit, train_steps

QKV_IO = 768 + 3 * 768  # in + out features of one ViT-B qkv
ALL_IO = QKV_IO + (768 + 768) + 2 * (768 + 3072)  # + proj, fc1, fc2


@pytest.fixture(scope="module")
def vit_b() -> torch.nn.Module:
    return timm.create_model("vit_base_patch16_clip_224", pretrained=False, num_classes=10)


@pytest.mark.parametrize("targets", [QKV, ALL_LINEAR])
def test_output_at_init_equals_frozen_model(targets: tuple[str, ...]) -> None:
    x, _ = batch()
    model = LoRA(targets).attach(tiny_vit(), 4, None).eval()
    with torch.no_grad():
        assert torch.equal(model(x), tiny_vit().eval()(x))


@pytest.mark.parametrize("targets", [QKV, ALL_LINEAR])
def test_targets_become_peft_lora_layers(targets: tuple[str, ...]) -> None:
    model = LoRA(targets).attach(tiny_vit(), 2, None)
    wrapped = {name for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped == {f"blocks.{i}.{t}" for i in range(2) for t in targets}


def test_only_lora_and_head_train_and_backbone_stays_bit_identical() -> None:
    """Two AdamW steps: B moves on the first (A's gradient is 0 while B = 0), A on the second."""
    x, y = batch()
    model = tiny_vit()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = LoRA().attach(model, 2, None)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {f"blocks.{i}.attn.qkv.lora_{ab}.default.weight" for i in range(2) for ab in "AB"}
    assert trainable == lora | {"head.weight", "head.bias"}

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model, x, y)
    for n in lora:
        assert not torch.equal(model.get_parameter(n), before[n]), n
    current = {n.replace(".base_layer", ""): p for n, p in model.named_parameters()}
    for n, old in original.items():
        if not n.startswith("head."):
            assert torch.equal(current[n].detach(), old), n


def lora_layers(model: torch.nn.Module) -> list[LoraLayer]:
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@pytest.mark.parametrize("rank", [1, 2, 7])
def test_default_scale_is_one_at_every_rank_with_input_dropout(rank: int) -> None:
    """PETL_Vision's LoRA: the update is B A x at every rank, so the ratio sweep keeps the step size."""
    layers = lora_layers(LoRA().attach(tiny_vit(), rank, None))
    assert layers and all(m.scaling["default"] == 1.0 for m in layers)
    assert all(m.lora_dropout["default"].p == 0.1 for m in layers)


@pytest.mark.parametrize("rank", [1, 4])
def test_fixed_alpha_gives_the_papers_alpha_over_rank(rank: int) -> None:
    layers = lora_layers(LoRA(alpha=8.0).attach(tiny_vit(), rank, None))
    assert all(m.scaling["default"] == pytest.approx(8.0 / rank) for m in layers)
    assert LoRA(alpha=8.0).hparams()["scale"] == "alpha / rank"


def test_update_is_scale_times_b_a_x() -> None:
    """Brute force: the adapted qkv equals W x + b + s * B A x (dropout off in eval)."""
    model = LoRA(scale=2.0).attach(tiny_vit(), 3, None).eval()
    layer = model.blocks[0].attn.qkv
    torch.manual_seed(3)
    with torch.no_grad():
        for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
            p.normal_()
        x = torch.randn(4, 16)
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        expected = x @ layer.base_layer.weight.T + layer.base_layer.bias + 2.0 * x @ a.T @ b.T
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("targets", [QKV, ALL_LINEAR])
@pytest.mark.parametrize("rank", [1, 3])
def test_analytic_count_equals_counted(targets: tuple[str, ...], rank: int) -> None:
    method = LoRA(targets)
    model = tiny_vit()
    expected = method.count(model, rank)
    assert trainable_report(method.attach(model, rank, None))["trainable_backbone"] == expected


def test_analytic_count_on_vit_b(vit_b: torch.nn.Module) -> None:
    assert LoRA(QKV).count(vit_b, 5) == 12 * 5 * QKV_IO
    assert LoRA(ALL_LINEAR).count(vit_b, 5) == 12 * 5 * ALL_IO
    assert list(LoRA().candidates(vit_b)) == list(range(1, 769))


@pytest.mark.parametrize(
    ("ratio", "rank", "reachable"),
    [
        (1e-4, 1, False),  # rank 1 on qkv is already 36,864 = 4.3e-4
        (1e-3, 2, False),  # rank 2 = 8.6e-4 (-14%), rank 3 = 1.29e-3 (+29%)
        (1e-2, 23, True),  # 847,872 = 9.88e-3
    ],
)
def test_vit_b_budgets(vit_b: torch.nn.Module, ratio: float, rank: int, reachable: bool) -> None:
    prepared = baselines.prepare(baselines.get("lora"), copy.deepcopy(vit_b), ratio)
    backbone = num_backbone_parameters(vit_b)
    assert (prepared.knob, prepared.knob_value, prepared.reachable) == ("rank", rank, reachable)
    assert prepared.trainable - prepared.head_params == 12 * rank * QKV_IO
    assert prepared.achieved_ratio == pytest.approx(12 * rank * QKV_IO / backbone)
    assert (abs(prepared.achieved_ratio / ratio - 1) <= 0.10) == reachable
    assert ("cannot reach" in prepared.note) == (not reachable)
