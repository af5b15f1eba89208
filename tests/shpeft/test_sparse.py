"""Sparse training: only the selected weights move, gradients equal the dense ones, merge is exact."""
import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shpeft
from shpeft.sparse import DELTA_GRAD_ROUTES, SparseDeltaLinear, _SparseDeltaLinearFn, pick_route

from .conftest import make_tiny_vit


def random_mask(model, ratio=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = {n: torch.rand(p.shape, generator=g) for n, p in shpeft.eligible_parameters(model).items()}
    return shpeft.select(scores, ratio)


def test_init_outputs_equal_frozen_model(tiny_vit, batches):
    x, _ = batches[0]
    ref = tiny_vit.eval()(x)
    model = shpeft.apply(copy.deepcopy(tiny_vit), random_mask(tiny_vit))
    assert torch.equal(model(x), ref)


def test_only_deltas_and_head_are_trainable(tiny_vit):
    mask = random_mask(tiny_vit)
    model = shpeft.apply(tiny_vit, mask)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    deltas = {n: k for n, k in trainable.items() if n.endswith("sparse.delta")}
    assert sum(deltas.values()) == mask.k
    assert set(trainable) - set(deltas) == {"head.weight", "head.bias"}
    report = shpeft.trainable_report(model)
    assert report["trainable_backbone"] == mask.k
    assert report["backbone_params"] == shpeft.num_backbone_parameters(make_tiny_vit())


def test_one_step_changes_only_selected_weights(tiny_vit, batches):
    before = {n: p.detach().clone() for n, p in tiny_vit.named_parameters()}
    mask = random_mask(tiny_vit)
    model = shpeft.apply(tiny_vit, mask)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = batches[0]
    F.cross_entropy(model(x), y).backward()
    opt.step()
    after = dict(shpeft.merge(model).named_parameters())
    assert after.keys() == before.keys()
    for name, old in before.items():
        new = after[name].detach()
        if name in mask.indices:
            changed = (new != old).flatten()
            selected = mask.dense(name).flatten()
            assert torch.equal(changed, selected), name  # every selected weight moved, nothing else
        elif name.startswith("head."):
            assert not torch.equal(new, old)
        else:
            assert torch.equal(new, old), f"frozen {name} changed"


def test_delta_gradients_equal_masked_dense_gradients(tiny_vit, batches):
    x, y = batches[1]
    dense = copy.deepcopy(tiny_vit)
    F.cross_entropy(dense(x), y).backward()
    mask = random_mask(tiny_vit, seed=4)
    model = shpeft.apply(tiny_vit, mask)
    F.cross_entropy(model(x), y).backward()
    dense_params = dict(dense.named_parameters())
    for name, site in shpeft.delta_sites(model).items():
        expected = dense_params[name].grad.flatten()[site.indices]
        torch.testing.assert_close(site.delta.grad, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(model.head.weight.grad, dense.head.weight.grad, rtol=1e-5, atol=1e-7)


ROUTES = sorted(DELTA_GRAD_ROUTES)


@pytest.mark.parametrize("route", ROUTES)
def test_gradcheck_float64(route):
    torch.manual_seed(0)
    base = nn.Linear(5, 4).double()
    layer = SparseDeltaLinear(base, torch.tensor([19, 0, 3, 7, 8]))  # unsorted on purpose
    layer.base.bias.requires_grad_(True)
    delta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)

    def f(x, bias, delta):
        return _SparseDeltaLinearFn.apply(x, base.weight, bias, delta, layer.sparse.indices, route, *layer.layout())

    assert torch.autograd.gradcheck(f, (x, layer.base.bias, delta))


def dense_reference_grads(base, indices, x, grad_out):
    """Gradients of the dense float64 layer: the selected weight entries, the input, the bias."""
    weight = base.weight.detach().double().requires_grad_(True)
    bias = base.bias.detach().double().requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    F.linear(x64, weight, bias).backward(grad_out.double())
    return weight.grad.flatten()[indices], x64.grad, bias.grad


def layer_grads(layer, x, grad_out, autocast=False):
    x = x.detach().requires_grad_(True)
    layer.base.bias.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = layer(x)
    out.backward(grad_out.to(out.dtype))
    return layer.sparse.delta.grad, x.grad, layer.base.bias.grad


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("density", [0.01, 0.3, 1.0])
def test_every_route_gives_the_dense_float64_gradients(route, density):
    torch.manual_seed(1)
    base = nn.Linear(48, 40)
    k = max(1, round(density * base.weight.numel()))
    indices = torch.randperm(base.weight.numel())[:k]
    x, grad_out = torch.randn(3, 9, 48), torch.randn(3, 9, 40)
    expected = dense_reference_grads(base, torch.sort(indices).values, x, grad_out)
    got = layer_grads(SparseDeltaLinear(copy.deepcopy(base), indices, route=route), x, grad_out)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_under_bf16_autocast_matches_the_float64_gradients(route):
    torch.manual_seed(2)
    base = nn.Linear(64, 32)
    indices = torch.randperm(base.weight.numel())[:200]
    x, grad_out = torch.randn(4, 16, 64), torch.randn(4, 16, 32)
    # the reference sees the bf16-rounded operands that autocast computes with
    rounded = copy.deepcopy(base)
    rounded.weight.data = rounded.weight.data.bfloat16().float()
    expected = dense_reference_grads(rounded, torch.sort(indices).values, x.bfloat16(), grad_out.bfloat16())
    got = layer_grads(SparseDeltaLinear(copy.deepcopy(base), indices, route=route), x, grad_out, autocast=True)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.float32
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, rtol=2e-2, atol=2e-2 * e.abs().max().item())


def test_routes_agree_on_a_model(tiny_vit, batches):
    x, y = batches[0]
    mask = random_mask(tiny_vit, ratio=0.1)
    grads = {}
    for route in ROUTES:
        model = shpeft.apply(copy.deepcopy(tiny_vit), mask)
        for m in model.modules():
            if isinstance(m, SparseDeltaLinear):
                m.route = route
        F.cross_entropy(model(x), y).backward()
        grads[route] = torch.cat([s.delta.grad for s in shpeft.delta_sites(model).values()])
    for route in ROUTES[1:]:
        torch.testing.assert_close(grads[route], grads[ROUTES[0]], rtol=1e-5, atol=1e-7)


def test_route_choice_follows_the_work_of_each_route():
    def pick(rows, cols, k, tokens=3152, device_type="cpu"):
        return pick_route((768, 192), rows=rows, cols=cols, k=k, tokens=tokens, device_type=device_type)

    # a few deltas in a wide layer and many tokens: one dot product each beats the GEMM over their columns
    assert pick(10, 10, 10) == "sampled"
    # every weight is a delta: the GEMM does the same multiply-adds, faster, and needs no copies
    assert pick(768, 192, 768 * 192) == "block"
    # few tokens: building the sparse pattern costs more than the small GEMM
    assert pick(10, 10, 10, tokens=4) == "block"
    # devices without a measured sampled route use the GEMM
    assert pick(10, 10, 10, device_type="cuda") == "block"


def test_block_route_saves_the_input_itself_when_every_column_is_touched():
    layer = SparseDeltaLinear(nn.Linear(4, 3), torch.tensor([0, 5, 10, 3]), route="block")  # columns 0-3
    x = torch.randn(5, 4)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer(x)
    assert any(t.data_ptr() == x.data_ptr() for t in saved)  # no copy


def test_unknown_route_fails_at_construction():
    with pytest.raises(ValueError, match="unknown route"):
        SparseDeltaLinear(nn.Linear(4, 4), torch.tensor([1]), route="nope")


@pytest.mark.parametrize("route", ROUTES)
def test_forward_saves_only_the_touched_input_columns(route):
    base = nn.Linear(64, 32)
    layer = SparseDeltaLinear(base, torch.tensor([3, 5, 64 + 3, 31 * 64 + 40]), route=route)  # columns 3, 5, 40
    x = torch.randn(2, 10, 64)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer(x)
    activations = [t for t in saved if t.data_ptr() not in {p.data_ptr() for p in layer.parameters()}
                   and t.dtype.is_floating_point]
    assert [t.numel() for t in activations] == [3 * 20]


def test_bf16_autocast_matches_dense_bf16(tiny_vit, batches):
    x, y = batches[0]
    mask = random_mask(tiny_vit, ratio=0.2)
    model = shpeft.apply(copy.deepcopy(tiny_vit), mask)
    with torch.no_grad():
        for site in shpeft.delta_sites(model).values():
            site.delta.normal_(0, 0.05)
    dense = shpeft.merge(copy.deepcopy(model))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        ref = dense(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        F.cross_entropy(model(x), y).backward()
    grads = [s.delta.grad for s in shpeft.delta_sites(model).values()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_merge_equals_wrapped_outputs(tiny_vit, batches):
    model = shpeft.apply(tiny_vit, random_mask(tiny_vit))
    with torch.no_grad():
        for site in shpeft.delta_sites(model).values():
            site.delta.normal_()
    x, _ = batches[2]
    wrapped = model(x)
    merged = shpeft.merge(model)
    assert not shpeft.delta_sites(merged)
    assert all(type(m) is not SparseDeltaLinear for m in merged.modules())
    torch.testing.assert_close(merged(x), wrapped, rtol=1e-6, atol=1e-6)


class OpenClipLikeTower(nn.Module):
    """open_clip's naming: transformer.resblocks.N.attn.in_proj_weight (nn.MultiheadAttention)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        block = nn.Module()
        block.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        block.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(8, 16), gelu=nn.GELU(), c_proj=nn.Linear(16, 8)))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList([block])
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        block = self.transformer.resblocks[0]
        x = x + block.attn(x, x, x, need_weights=False)[0]
        x = x + block.mlp(x)
        return self.head(x.mean(1))


def test_open_clip_multihead_attention_weights_via_parametrization():
    model = OpenClipLikeTower()
    names = set(shpeft.eligible_parameters(model))
    assert names == {
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.0.attn.out_proj.weight",
        "transformer.resblocks.0.mlp.c_fc.weight",
        "transformer.resblocks.0.mlp.c_proj.weight",
    }
    x, y = torch.randn(4, 5, 8), torch.tensor([0, 1, 2, 0])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = model(x)
    mask = random_mask(model, ratio=0.1)
    shpeft.apply(model, mask)
    assert torch.equal(model(x), ref)
    assert set(shpeft.delta_sites(model)) == names
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    wrapped = model(x)
    merged = shpeft.merge(model)
    torch.testing.assert_close(merged(x), wrapped)
    after = dict(merged.named_parameters())
    for name in names:
        changed = (after[name].detach() != before[name]).flatten()
        assert torch.equal(changed, mask.dense(name).flatten()), name
    assert torch.equal(after["transformer.resblocks.0.attn.in_proj_bias"], before["transformer.resblocks.0.attn.in_proj_bias"])


def test_mask_for_another_model_is_rejected(tiny_vit):
    other = make_tiny_vit()
    other.blocks[0].mlp.fc1 = nn.Linear(16, 8)
    with pytest.raises(ValueError, match="does not match 'blocks.0.mlp.fc1.weight'"):
        shpeft.apply(other, random_mask(tiny_vit))
