"""SPT-LoRA (He et al., ICCV 2023): frozen start, trainable set, one training step, the
structured/unstructured split on planted sensitivities, and exact budgets."""
from __future__ import annotations

import copy

import pytest
import timm
import torch
from peft.tuners.lora import LoraLayer

import baselines
import shpeft
from baselines.spt import NATIVE_RATIO, SPTLoRA, lora_costs, structured_matrices
from tests.baselines.helpers import tiny_vit

LORA_WEIGHT = "blocks.1.mlp.fc1.weight"  # the planted, sensitive-everywhere matrix
K = 450  # fc1's rank-8 LoRA costs 8 * (16 + 32) = 384; any second LoRA (>= 256) would not fit


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(6, 3, 16, 16, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(2)]


def planted_scores(model: torch.nn.Module, *args, **kwargs) -> dict[str, torch.Tensor]:
    """Small random sensitivities, except LORA_WEIGHT, which is sensitive everywhere."""
    g = torch.Generator().manual_seed(2)
    params = shpeft.eligible_parameters(model)
    scores = {n: torch.rand(p.shape, generator=g) for n, p in params.items()}
    scores[LORA_WEIGHT] += 10.0
    return scores


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(frozen reference, SPT model with k = K) under planted sensitivities."""
    monkeypatch.setattr(shpeft, "importance", planted_scores)
    frozen = tiny_vit().eval()
    return frozen, SPTLoRA().attach(copy.deepcopy(frozen), K, batches())


def test_registered_with_native_ratio() -> None:
    prepared = baselines.prepare(baselines.get("spt"), tiny_vit(), None, batches())
    assert prepared.knob == "k" and abs(prepared.achieved_ratio / NATIVE_RATIO - 1) < 0.1


def test_planted_matrix_gets_lora_others_sparse(planted) -> None:
    _, model = planted
    lora = {n for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    sparse = set(shpeft.delta_sites(model))
    assert lora == {LORA_WEIGHT.removesuffix(".weight")}
    assert sparse and LORA_WEIGHT not in sparse
    assert shpeft.trainable_report(model)["trainable_backbone"] == K  # 384 LoRA + 16 cls_token + 50 deltas


def test_init_equals_frozen_model(planted) -> None:
    frozen, model = planted
    x = batches()[0][0]
    with torch.no_grad():
        assert torch.equal(model.eval()(x), frozen(x))


def test_only_spt_parameters_and_head_train(planted) -> None:
    _, model = planted
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_" in n or n.endswith("sparse.delta") or n.startswith("head.") or n == "cls_token"
               for n in trainable)
    assert {"head.weight", "head.bias", "cls_token"} <= set(trainable)


def test_one_step_moves_only_spt_parameters(planted) -> None:
    _, model = planted
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(trainable.values(), lr=1e-2)
    x, y = batches()[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= set(trainable)
    assert any(".lora_B" in n for n in changed) and any(n.endswith("sparse.delta") for n in changed)


def test_class_token_trains_without_decay_and_is_paid_from_k() -> None:
    prepared = baselines.prepare(baselines.get("spt"), tiny_vit(), 1e-2, batches())
    assert prepared.model.cls_token.requires_grad and "cls_token" in prepared.no_decay
    assert prepared.trainable - prepared.head_params == round(1e-2 * prepared.backbone_params)
    assert prepared.hparams["tokens"] == ["cls_token"] and prepared.hparams["lora_dropout"] == 0.1


def test_no_lora_when_budget_cannot_pay_one() -> None:
    scores = planted_scores(tiny_vit())
    costs = lora_costs(tiny_vit(), scores, 8)
    assert structured_matrices(scores, costs, 383, 10.0) == []
    assert structured_matrices(scores, costs, K, 10.0) == [LORA_WEIGHT]


@pytest.mark.parametrize("ratio", [1e-2, 1e-1])
def test_budget_tiny_vit(ratio: float) -> None:
    prepared = baselines.prepare(baselines.get("spt"), tiny_vit(), ratio, batches())
    assert prepared.reachable and abs(prepared.achieved_ratio / ratio - 1) <= baselines.TOLERANCE


def test_budget_past_all_loras_is_unreachable() -> None:
    prepared = baselines.prepare(baselines.get("spt"), tiny_vit(), 0.5, batches())  # max: 8 LoRAs + cls of 7664
    assert not prepared.reachable and "cannot reach" in prepared.note
    assert SPTLoRA().count(tiny_vit(), 3832) == 3072 + 16 == prepared.trainable - prepared.head_params


@pytest.fixture(scope="module")
def vit_b() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """ViT-B/16 (no weights) and its task-agnostic w^2 scores, standing in for the gradients."""
    model = timm.create_model("vit_base_patch16_clip_224", pretrained=False, num_classes=10)
    return model, shpeft.importance(model, kind="task_agnostic", estimator="l2")


@pytest.mark.parametrize("ratio", [1e-4, 1e-3, 1e-2])
def test_budget_vit_b(vit_b, ratio: float, monkeypatch: pytest.MonkeyPatch) -> None:
    model, scores = vit_b
    monkeypatch.setattr(shpeft, "importance", lambda *a, **k: {n: s.clone() for n, s in scores.items()})
    prepared = baselines.prepare(baselines.get("spt"), copy.deepcopy(model), ratio, [(None, None)])
    assert prepared.reachable and abs(prepared.achieved_ratio / ratio - 1) <= baselines.TOLERANCE
