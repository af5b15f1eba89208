"""Bottleneck adapters (baselines/adapter.py): Houlsby sequential and AdaptFormer parallel
placement, identity at init, what trains, analytic counts, ratios on ViT-B/16."""
from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F

import baselines
from baselines.adapter import AdaptFormer, Houlsby
from shpeft import num_backbone_parameters, trainable_report
from tests.baselines.helpers import batch, tiny_vit, train_steps

SITES = {"adapter": ("attn", "mlp"), "adaptformer": ("mlp",)}
VIT_B_LN = (1 + 2 * 12 + 1) * 2 * 768  # norm_pre, norm1/norm2 per block, final norm


def bottleneck(width: int) -> int:
    """Weights and biases of one ViT-B bottleneck (768 -> width -> 768)."""
    return 2 * 768 * width + width + 768


def randomise_adapters(model: torch.nn.Module) -> None:
    torch.manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapter." in name:
                p.normal_()


@pytest.fixture(scope="module")
def vit_b() -> torch.nn.Module:
    return timm.create_model("vit_base_patch16_clip_224", pretrained=False, num_classes=10)


@pytest.mark.parametrize("name", SITES)
def test_output_at_init_equals_frozen_model(name: str) -> None:
    x, _ = batch()
    model = baselines.get(name).attach(tiny_vit(), 4, None).eval()
    with torch.no_grad():
        assert torch.equal(model(x), tiny_vit().eval()(x))


def test_houlsby_adapts_each_sublayer_output_before_the_residual() -> None:
    block = Houlsby().attach(tiny_vit(), 3, None).blocks[0]
    randomise_adapters(block)
    x = torch.randn(2, 5, 16)
    attn, mlp = block.attn, block.mlp
    with torch.no_grad():
        a = attn.sublayer(block.norm1(x))
        x1 = x + a + attn.adapter.up(F.gelu(attn.adapter.down(a)))
        m = mlp.sublayer(block.norm2(x1))
        expected = x1 + m + mlp.adapter.up(F.gelu(mlp.adapter.down(m)))
        torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reads", ["residual", "normed"])
def test_adaptformer_adds_a_scaled_branch_parallel_to_the_mlp(reads: str) -> None:
    """Official code: the branch reads the raw residual x; the paper's Eq. 3: ln(x)."""
    frozen = tiny_vit().blocks[0]
    block = AdaptFormer(reads=reads).attach(tiny_vit(), 3, None).blocks[0].eval()  # eval: no dropout
    randomise_adapters(block)
    adapter = block.mlp.adapter
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        x1 = x + frozen.attn(frozen.norm1(x))
        u = frozen.norm2(x1)
        branch = adapter.up(F.relu(adapter.down(x1 if reads == "residual" else u)))
        torch.testing.assert_close(block(x), x1 + frozen.mlp(u) + 0.1 * branch, rtol=0, atol=1e-6)


def test_adaptformer_bottleneck_drops_out_after_the_relu_in_training_only() -> None:
    adapter = AdaptFormer().attach(tiny_vit(), 3, None).blocks[0].mlp.adapter
    assert adapter.dropout.p == 0.1 and isinstance(adapter.act, torch.nn.ReLU)
    assert Houlsby().attach(tiny_vit(), 3, None).blocks[0].mlp.adapter.dropout.p == 0.0


def test_unknown_branch_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="reads must be one of"):
        AdaptFormer(reads="input")


@pytest.mark.parametrize("name", SITES)
def test_only_adapters_norms_and_head_train_and_backbone_stays_bit_identical(name: str) -> None:
    """Two AdamW steps: up moves on the first (down's gradient is 0 while up = 0), down on the second."""
    x, y = batch()
    model = tiny_vit()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = dict(model.named_parameters())  # the same objects, whatever wrapping renames them to
    model = baselines.get(name).attach(model, 2, None)
    adapters = {
        f"blocks.{i}.{site}.adapter.{layer}.{kind}"
        for i in range(2) for site in SITES[name] for layer in ("down", "up") for kind in ("weight", "bias")
    }
    norms = {n for n in original if "norm" in n} if name == "adapter" else set()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == adapters | norms | {"head.weight", "head.bias"}

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model, x, y)
    for n in adapters:
        assert not torch.equal(model.get_parameter(n), before[n]), n
    for n, old in original.items():
        if n not in norms and not n.startswith("head."):
            assert torch.equal(params[n].detach(), old), n


@pytest.mark.parametrize("method", [Houlsby(), Houlsby(train_norms=False), AdaptFormer()])
@pytest.mark.parametrize("width", [1, 5])
def test_analytic_count_equals_counted(method: baselines.PeftMethod, width: int) -> None:
    model = tiny_vit()
    expected = method.count(model, width)
    assert trainable_report(method.attach(model, width, None))["trainable_backbone"] == expected


def test_analytic_count_on_vit_b(vit_b: torch.nn.Module) -> None:
    assert Houlsby().count(vit_b, 7) == 24 * bottleneck(7) + VIT_B_LN
    assert Houlsby(train_norms=False).count(vit_b, 7) == 24 * bottleneck(7)
    assert AdaptFormer().count(vit_b, 7) == 12 * bottleneck(7)


@pytest.mark.parametrize(
    ("name", "ratio", "width", "reachable"),
    [
        ("adapter", 1e-4, 1, False),  # width 1 + LayerNorms = 95,256 = 1.11e-3
        ("adapter", 1e-3, 1, False),  # the same 1.11e-3 is 11% off
        ("adapter", 1e-2, 22, True),  # 869,904 = 1.014e-2
        ("adaptformer", 1e-4, 1, False),  # width 1 = 27,660 = 3.2e-4
        ("adaptformer", 1e-3, 4, True),  # 82,992 = 9.67e-4
        ("adaptformer", 1e-2, 46, True),  # 857,640 = 9.996e-3
    ],
)
def test_vit_b_budgets(vit_b: torch.nn.Module, name: str, ratio: float, width: int, reachable: bool) -> None:
    prepared = baselines.prepare(baselines.get(name), copy.deepcopy(vit_b), ratio)
    expected = 24 * bottleneck(width) + VIT_B_LN if name == "adapter" else 12 * bottleneck(width)
    assert (prepared.knob, prepared.knob_value, prepared.reachable) == ("width", width, reachable)
    assert prepared.trainable - prepared.head_params == expected
    assert prepared.achieved_ratio == pytest.approx(expected / num_backbone_parameters(vit_b))
    assert (abs(prepared.achieved_ratio / ratio - 1) <= 0.10) == reachable
    assert ("cannot reach" in prepared.note) == (not reachable)


def test_houlsby_without_norms_reaches_1e3(vit_b: torch.nn.Module) -> None:
    backbone = num_backbone_parameters(vit_b)
    method = Houlsby(train_norms=False)
    assert method.solve(vit_b, 1e-3, backbone) == 2
    assert 24 * bottleneck(2) / backbone == pytest.approx(1.0747e-3, rel=1e-4)
