"""SSF (baselines/ssf.py): where the scales and shifts go, the output against y * scale + shift
applied by hand, SSF's initialisation, the fixed count and the merge into the weights."""
from __future__ import annotations

import pytest
import timm
import torch

import baselines
from baselines.ssf import SSF, ScaleShift, merge
from shpeft import trainable_report
from tests.baselines.helpers import batch, tiny_vit

SITES = {"patch_embed.proj", "norm"} | {
    f"blocks.{i}.{m}" for i in range(2) for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
}


def ssf_model() -> torch.nn.Module:
    return SSF().attach(tiny_vit(), None, None).eval()


def test_scale_shift_follows_every_operation_of_ssfs_vit() -> None:
    model = ssf_model()
    assert {n for n, m in model.named_modules() if isinstance(m, ScaleShift)} == SITES
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{s}.ssf_{p}" for s in SITES for p in ("scale", "shift")} | {"head.weight", "head.bias"}


def test_output_equals_scale_and_shift_applied_by_hand() -> None:
    """Brute force: forward hooks on the plain model apply y * scale + shift (per channel) with
    the SSF model's values, after the same operations."""
    x, _ = batch()
    model = ssf_model()
    reference = tiny_vit().eval()
    for site in SITES:
        wrapped = model.get_submodule(site)
        channel_last = not isinstance(wrapped.base, torch.nn.Conv2d)

        def hook(module, args, out, w=wrapped, last=channel_last):
            shape = (-1,) if last else (-1, 1, 1)
            return out * w.ssf_scale.view(shape) + w.ssf_shift.view(shape)

        reference.get_submodule(site).register_forward_hook(hook)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-6)


def test_linear_site_by_hand() -> None:
    layer = ssf_model().blocks[0].mlp.fc1
    x = torch.randn(4, 16)
    expected = (x @ layer.base.weight.T + layer.base.bias) * layer.ssf_scale + layer.ssf_shift
    torch.testing.assert_close(layer(x), expected)


def test_initialisation_is_ssfs_normal_around_one_and_zero() -> None:
    model = SSF().attach(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3), None, None)
    scales = torch.cat([p.flatten() for n, p in model.named_parameters() if n.endswith("ssf_scale")])
    shifts = torch.cat([p.flatten() for n, p in model.named_parameters() if n.endswith("ssf_shift")])
    assert scales.mean().item() == pytest.approx(1.0, abs=1e-3) and scales.std().item() == pytest.approx(0.02, rel=0.05)
    assert shifts.mean().item() == pytest.approx(0.0, abs=1e-3) and shifts.std().item() == pytest.approx(0.02, rel=0.05)


def test_fixed_count_equals_counted() -> None:
    """Two vectors per site: patch embedding 16, per block norm1 16 + qkv 48 + proj 16 + norm2 16 +
    fc1 32 + fc2 16, final norm 16."""
    expected = 2 * (16 + 2 * (16 + 48 + 16 + 16 + 32 + 16) + 16)
    assert SSF().count(tiny_vit(), None) == expected == trainable_report(ssf_model())["trainable_backbone"]
    prepared = baselines.prepare(baselines.get("ssf"), tiny_vit(), 1e-3)
    assert prepared.knob is None and not prepared.reachable


def test_merge_folds_the_affines_into_the_weights() -> None:
    x, _ = batch()
    model = ssf_model()
    with torch.no_grad():
        before = model(x)
        merged = merge(model)
        assert not any(isinstance(m, ScaleShift) for m in merged.modules())
        assert [n for n, _ in merged.named_parameters()] == [n for n, _ in tiny_vit().named_parameters()]
        torch.testing.assert_close(merged(x), before, rtol=1e-5, atol=1e-6)


def test_merge_gives_a_bias_to_an_operation_without_one() -> None:
    site = ScaleShift(torch.nn.Conv2d(3, 4, 2, bias=False))  # as CLIP's patch embedding
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        expected = site(x)
        torch.testing.assert_close(site.merged()(x), expected, rtol=1e-5, atol=1e-6)
