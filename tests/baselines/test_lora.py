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
    model = LoRA(targets).apply(tiny_vit(), 4, None).eval()
    with torch.no_grad():
        assert torch.equal(model(x), tiny_vit().eval()(x))


@pytest.mark.parametrize("targets", [QKV, ALL_LINEAR])
def test_targets_become_peft_lora_layers(targets: tuple[str, ...]) -> None:
    model = LoRA(targets).apply(tiny_vit(), 2, None)
    wrapped = {name for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped == {f"blocks.{i}.{t}" for i in range(2) for t in targets}


def test_only_lora_and_head_train_and_backbone_stays_bit_identical() -> None:
    """Two AdamW steps: B moves on the first (A's gradient is 0 while B = 0), A on the second."""
    x, y = batch()
    model = tiny_vit()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = LoRA().apply(model, 2, None)
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


@pytest.mark.parametrize("targets", [QKV, ALL_LINEAR])
@pytest.mark.parametrize("rank", [1, 3])
def test_analytic_count_equals_counted(targets: tuple[str, ...], rank: int) -> None:
    method = LoRA(targets)
    model = tiny_vit()
    expected = method.count(model, rank)
    assert trainable_report(method.apply(model, rank, None))["trainable_backbone"] == expected


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
    prepared = baselines.prepare("lora", copy.deepcopy(vit_b), ratio)
    backbone = num_backbone_parameters(vit_b)
    assert (prepared.knob, prepared.knob_value, prepared.reachable) == ("rank", rank, reachable)
    assert prepared.trainable - prepared.head_params == 12 * rank * QKV_IO
    assert prepared.achieved_ratio == pytest.approx(12 * rank * QKV_IO / backbone)
    assert (abs(prepared.achieved_ratio / ratio - 1) <= 0.10) == reachable
    assert ("cannot reach" in prepared.note) == (not reachable)
