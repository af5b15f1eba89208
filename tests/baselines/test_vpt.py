"""VPT-shallow / VPT-deep (Jia et al., ECCV 2022): forward path, token layout, training, budgets."""
from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import baselines
from baselines.vpt import PromptedViT
from shpeft import num_backbone_parameters
from tests.baselines import helpers

P = 3  # prompt length used by the tiny-model tests
N_PATCHES = 4  # (16 / 8) ** 2


def tiny_vit(pre_norm: bool = False, global_pool: str = "token") -> VisionTransformer:
    return helpers.tiny_vit(pre_norm=pre_norm, global_pool=global_pool).eval()


def images() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def adapt(name: str, vit: VisionTransformer, length: int = P) -> PromptedViT:
    return baselines.get(name).attach(vit, length, None).eval()


def block_inputs(model: PromptedViT) -> list[torch.Tensor]:
    """Run ``model`` and return the input of every block."""
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda m, a: seen.append(a[0])) for b in model.vit.blocks]
    with torch.no_grad():
        model(images())
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name", ["vpt-shallow", "vpt-deep"])
@pytest.mark.parametrize("pre_norm", [False, True])
@pytest.mark.parametrize("pool", ["token", "avg"])
def test_prompt_free_path_equals_timm(name: str, pre_norm: bool, pool: str) -> None:
    vit = tiny_vit(pre_norm, pool)
    with torch.no_grad():
        expected = vit(images())
    with torch.no_grad():
        assert torch.equal(adapt(name, vit, length=0)(images()), expected)


@pytest.mark.parametrize("name", ["vpt-shallow", "vpt-deep"])
@pytest.mark.parametrize("pool", ["token", "avg"])
def test_prompts_change_output_but_not_patch_embeddings(name: str, pool: str) -> None:
    vit = tiny_vit(pre_norm=True, global_pool=pool)
    reference = copy.deepcopy(vit)
    ref_in: list[torch.Tensor] = []
    reference.blocks[0].register_forward_pre_hook(lambda m, a: ref_in.append(a[0]))
    with torch.no_grad():
        expected = reference(images())
    model = adapt(name, vit)
    first = block_inputs(model)[0]
    # CLS and patches enter block 0 exactly as in timm: prompts get no position embedding.
    assert torch.equal(first[:, :1], ref_in[0][:, :1])
    assert torch.equal(first[:, 1 + P:], ref_in[0][:, 1:])
    with torch.no_grad():
        assert not torch.allclose(model(images()), expected)


def test_shallow_layout_cls_prompts_patches() -> None:
    model = adapt("vpt-shallow", tiny_vit())
    assert model.prompts.shape == (1, P, 16)
    first, second = block_inputs(model)
    assert first.shape == second.shape == (2, 1 + P + N_PATCHES, 16)
    assert torch.equal(first[:, 1:1 + P], model.prompts[0].expand(2, -1, -1))
    assert not torch.allclose(second[:, 1:1 + P], model.prompts[0].expand(2, -1, -1))  # block 0's outputs


def test_deep_replaces_prompts_at_every_block() -> None:
    model = adapt("vpt-deep", tiny_vit())
    assert model.prompts.shape == (2, P, 16)
    for i, x in enumerate(block_inputs(model)):
        assert x.shape == (2, 1 + P + N_PATCHES, 16)
        assert torch.equal(x[:, 1:1 + P], model.prompts[i].expand(2, -1, -1))


def test_prompt_init_bound() -> None:
    model = adapt("vpt-deep", tiny_vit(), length=50)
    bound = (6 / (3 * 8 * 8 + 16)) ** 0.5  # xavier uniform as in the VPT code
    assert model.prompts.abs().max() <= bound
    assert model.prompts.abs().max() > 0.9 * bound


@pytest.mark.parametrize("name", ["vpt-shallow", "vpt-deep"])
def test_only_prompts_and_head_train(name: str) -> None:
    vit = tiny_vit()
    method = baselines.get(name)
    backbone = num_backbone_parameters(vit)
    model = method.attach(vit, P, None).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompts", "head.weight", "head.bias"}
    assert num_backbone_parameters(model) == backbone + model.prompts.numel()  # head excluded
    assert method.count(tiny_vit(), P) == model.prompts.numel() == (2 if name == "vpt-deep" else 1) * P * 16

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.nn.functional.cross_entropy(model(images()), torch.tensor([0, 2])).backward()
    optim.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n in trainable), n


@pytest.fixture(scope="module")
def vit_b() -> VisionTransformer:
    return timm.create_model("vit_base_patch16_clip_224", pretrained=False, num_classes=10)


# Backbone = 85,799,424 weights, D = 768, 12 blocks: one prompt costs 768 (shallow) or 9,216 (deep).
# Target / per-prompt cost, rounded in log space: shallow 11.17 -> 11, 111.7 -> 112, 1117 -> capped at
# 200 (the paper's largest length; 1117 prompts would be 6x the 196 patch tokens) so unreachable;
# deep 0.93 -> 1, 9.31 -> 9, 93.1 -> 93.
@pytest.mark.parametrize(
    ("name", "ratio", "prompts", "reachable"),
    [
        ("vpt-shallow", 1e-4, 11, True),
        ("vpt-shallow", 1e-3, 112, True),
        ("vpt-shallow", 1e-2, 200, False),
        ("vpt-deep", 1e-4, 1, True),
        ("vpt-deep", 1e-3, 9, True),
        ("vpt-deep", 1e-2, 93, True),
    ],
)
def test_matched_ratios_on_vit_b(vit_b, name: str, ratio: float, prompts: int, reachable: bool) -> None:
    backbone = num_backbone_parameters(vit_b)
    assert backbone == 85_799_424
    prepared = baselines.prepare(baselines.get(name), copy.deepcopy(vit_b), ratio)
    per_prompt = 768 * (12 if name == "vpt-deep" else 1)
    assert prepared.knob == "prompts" and prepared.knob_value == prompts
    assert prepared.trainable == prompts * per_prompt + prepared.head_params
    assert prepared.head_params == 768 * 10 + 10
    assert prepared.achieved_ratio == pytest.approx(prompts * per_prompt / backbone)
    assert prepared.reachable is reachable
    assert (prepared.note == "") is reachable
    if not reachable:
        assert "prompts=200" in prepared.note


def test_vit_b_clip_prompt_free_path_equals_timm(vit_b) -> None:
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    vit = copy.deepcopy(vit_b).eval()
    with torch.no_grad():
        expected = vit(x)
        assert torch.equal(adapt("vpt-deep", vit, length=0)(x), expected)


def test_native_size_and_registration() -> None:
    for name in ("vpt-shallow", "vpt-deep"):
        assert name in baselines.names()
        prepared = baselines.prepare(baselines.get(name), tiny_vit())
        assert prepared.knob_value == 10 and prepared.target_ratio is None
    assert list(baselines.get("vpt-deep").candidates(tiny_vit())) == list(range(1, 201))


@pytest.mark.parametrize(("name", "dropout"), [("vpt-shallow", 0.0), ("vpt-deep", 0.1)])
def test_prompt_dropout_per_variant_and_prompts_out_of_weight_decay(name: str, dropout: float) -> None:
    """The VPT configs: prompt dropout 0.1 for deep, 0 for shallow; prompts are not decayed."""
    prepared = baselines.prepare(baselines.get(name), helpers.tiny_vit(), None)
    assert prepared.model.prompt_dropout.p == dropout == prepared.hparams["dropout"]
    assert "prompts" in prepared.no_decay and "head.weight" not in prepared.no_decay
