"""Adapter files tried as a hostile user would: every broken or foreign file is refused with a
one-line error before the model is touched, and ``python -m shpeft inspect`` says ``error:``."""
import json
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer

import shpeft
from shpeft.__main__ import inspect_adapter, main
from shpeft.io import checksum, model_fingerprint, plain_parameters

from ..shpeft.conftest import make_tiny_vit
from ..shpeft.test_sparse import OpenClipLikeTower, random_mask

TUNED = "blocks.0.attn.qkv.weight"  # a weight random_mask always tunes in the tiny ViT
IMAGES = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def trained(model):
    """``model`` with a random mask applied and random (non-zero) deltas and head."""
    shpeft.apply(model, random_mask(model, seed=0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for site in shpeft.delta_sites(model).values():
            site.delta.copy_(torch.randn(site.delta.shape, generator=g))
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=g))
    return model


@pytest.fixture
def adapter(tmp_path):
    return shpeft.save_adapter(trained(make_tiny_vit()), tmp_path / "a.safetensors")


def rewritten(path, edit_tensors: Callable[[dict], None] | None = None, **metadata):
    """A copy of the adapter at ``path`` with tensors edited in place (and a checksum that
    matches the edit, as a buggy writer would leave) and metadata keys replaced (``None`` drops one)."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    if edit_tensors:
        edit_tensors(tensors)
        meta["checksum"] = checksum(tensors)
    for key, value in metadata.items():
        meta.pop(key) if value is None else meta.__setitem__(key, value)
    out = path.with_name("edited.safetensors")
    save_file(tensors, str(out), metadata=meta)
    return out


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {n: p.requires_grad for n, p in model.named_parameters()},
        [type(m) for m in model.modules()],
    )


def assert_refused(path, model=None, match=None):
    """load_adapter raises a one-line AdapterMismatchError and leaves ``model`` bit-identical."""
    model = model or make_tiny_vit()
    state, grads, types = snapshot(model)
    with pytest.raises(shpeft.AdapterMismatchError, match=match) as info:
        shpeft.load_adapter(model, path)
    assert "\n" not in str(info.value)
    after = model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k].view(torch.uint8), state[k].view(torch.uint8)) for k in state)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert [type(m) for m in model.modules()] == types and not shpeft.delta_sites(model)
    return info.value


def set_index(name, position, value):
    def edit(tensors):
        tensors[f"indices::{name}"][position] = value
    return edit


# -- broken files -------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0, 7, 100, -1])
def test_truncated_file_is_refused(adapter, keep):
    cut = adapter.with_name("cut.safetensors")
    data = adapter.read_bytes()
    cut.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    assert_refused(cut, match="not a readable safetensors adapter")


def test_corrupt_header_is_refused(adapter):
    data = bytearray(adapter.read_bytes())
    data[8] = ord("[")  # the JSON header must open with "{"
    bad = adapter.with_name("bad.safetensors")
    bad.write_bytes(bytes(data))
    assert_refused(bad, match="not a readable safetensors adapter")


@pytest.mark.parametrize("region", ["header", "data"])
def test_any_flipped_byte_is_refused(adapter, region):
    """Every single-byte change of the header or of the tensor data is caught (the data by the checksum)."""
    data = adapter.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    positions = range(0, header_end) if region == "header" else range(header_end, len(data))
    bad = adapter.with_name("flipped.safetensors")
    for position in list(positions)[:: max(1, len(positions) // 40)]:
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        bad.write_bytes(bytes(flipped))
        assert_refused(bad)


def test_duplicate_indices_are_refused(adapter):
    first = int(load_file(str(adapter))[f"indices::{TUNED}"][0])
    assert_refused(rewritten(adapter, set_index(TUNED, 1, first)), match="duplicates")


@pytest.mark.parametrize("value", [-1, 48 * 16, 10**6])
def test_out_of_range_indices_are_refused(adapter, value):
    assert_refused(rewritten(adapter, set_index(TUNED, -1, value)), match=r"leave the range \[0, 768\)")


@pytest.mark.parametrize("length", [1, "short", "long"])
def test_delta_of_another_length_is_refused(adapter, length):
    """A 1-element delta used to be broadcast over every index; any other length used to fail mid-load."""
    def edit(tensors):
        delta = tensors[f"delta::{TUNED}"]
        n = {1: 1, "short": delta.numel() - 1, "long": delta.numel() + 1}[length]
        tensors[f"delta::{TUNED}"] = torch.ones(n)
    assert_refused(rewritten(adapter, edit), match="deltas for")


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.pop(f"delta::{TUNED}"), "disagree on"),
    (lambda t: t.pop(f"indices::{TUNED}"), "disagree on"),
    (lambda t: t.__setitem__("stray", torch.ones(1)), "unexpected tensor 'stray'"),
    (lambda t: t.__setitem__(f"indices::{TUNED}", t[f"indices::{TUNED}"].float()), "must be 1-D int32/int64"),
    (lambda t: t[f"delta::{TUNED}"].__setitem__(0, float("nan")), "NaN/Inf"),
])
def test_inconsistent_tensors_are_refused(adapter, edit, match):
    assert_refused(rewritten(adapter, edit), match=match)


@pytest.mark.parametrize("metadata, match", [
    ({"shapes": None}, "'shapes' is missing"),
    ({"shapes": "{not json"}, "'shapes' is not valid JSON"),
    ({"shapes": json.dumps({TUNED: [48, -16]})}, "invalid shape"),
    ({"backbone_params": "many"}, "'backbone_params' is not a positive int"),
    ({"format": None}, "is not an shpeft adapter"),
])
def test_bad_metadata_is_refused(adapter, metadata, match):
    assert_refused(rewritten(adapter, **metadata), match=match)


def test_refusals_are_invalid_adapter_errors(adapter):
    error = assert_refused(rewritten(adapter, set_index(TUNED, -1, -1)))
    assert isinstance(error, shpeft.InvalidAdapterError)


# -- files from another model --------------------------------------------------------------------

def vit(**overrides):
    torch.manual_seed(0)
    config = dict(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=3)
    return VisionTransformer(**{**config, **overrides})


@pytest.mark.parametrize("overrides", [{"depth": 3}, {"patch_size": 4}, {"img_size": 32}])
def test_adapter_from_a_model_with_the_same_widths_is_refused(adapter, overrides):
    """Every tuned weight and the head have the same shapes here; only the rest of the model differs."""
    other = vit(**overrides)
    params = dict(other.named_parameters())
    assert all(params[n].shape == s for n, s in shpeft.read_adapter(adapter).shapes.items())
    assert_refused(adapter, other, match="backbone of")
    assert_refused(rewritten(adapter, backbone_params=None), other, match="other parameter shapes")


def test_head_with_another_class_count_is_refused(adapter):
    assert_refused(adapter, vit(num_classes=5), match=r"'head\.(weight|bias)' has shape \(3(, 16)?,?\), model has \(5")


def test_wider_model_is_refused(adapter):
    assert_refused(adapter, vit(embed_dim=32), match="has shape")


def test_model_that_already_carries_deltas_is_refused(adapter):
    model = trained(make_tiny_vit())
    with pytest.raises(shpeft.AdapterMismatchError, match="already carries sparse deltas"):
        shpeft.load_adapter(model, adapter)


# -- what a good file does -----------------------------------------------------------------------

def test_loaded_adapter_matches_the_trained_model_wrapped_and_merged(tmp_path):
    model = trained(make_tiny_vit())
    path = shpeft.save_adapter(model, tmp_path / "a.safetensors")
    loaded = shpeft.load_adapter(make_tiny_vit(), path)
    x = IMAGES
    expected = model(x)
    assert torch.equal(loaded(x), expected)
    torch.testing.assert_close(shpeft.merge(loaded)(x), expected, rtol=1e-5, atol=1e-6)


def test_adapter_without_the_new_metadata_still_loads(adapter):
    """Files written before backbone_params and model_fingerprint were recorded load, with every other check."""
    old = rewritten(adapter, backbone_params="", model_fingerprint=None)
    assert inspect_adapter(str(old))["ratio"] is None
    x = IMAGES
    assert torch.equal(shpeft.load_adapter(make_tiny_vit(), old)(x), shpeft.load_adapter(make_tiny_vit(), adapter)(x))
    assert_refused(rewritten(old, set_index(TUNED, -1, 10**6)), match="leave the range")  # still checked


def test_save_records_the_backbone_so_inspect_reports_the_ratio(tmp_path):
    """The runner calls save_adapter(model, path) without backbone_params."""
    model = trained(make_tiny_vit())
    backbone = shpeft.num_backbone_parameters(make_tiny_vit())
    assert shpeft.num_backbone_parameters(model) == backbone  # deltas are not backbone weights
    info = inspect_adapter(str(shpeft.save_adapter(model, tmp_path / "a.safetensors")))
    k = sum(site.delta.numel() for site in shpeft.delta_sites(model).values())
    assert info["backbone_params"] == backbone and info["ratio"] == k / backbone


@pytest.mark.parametrize("bad", [0, -5, True, 1.5])
def test_save_refuses_a_bad_backbone_size(tmp_path, bad):
    with pytest.raises(ValueError, match="backbone_params must be a positive int"):
        shpeft.save_adapter(trained(make_tiny_vit()), tmp_path / "a.safetensors", backbone_params=bad)


@pytest.mark.parametrize("make", [make_tiny_vit, OpenClipLikeTower])
def test_fingerprint_and_plain_names_do_not_change_under_apply(make):
    """Linear wrappers (SparseDeltaLinear) and parametrized weights (MultiheadAttention) both."""
    model = make()
    names, fingerprint = {n: p.shape for n, p in model.named_parameters()}, model_fingerprint(model)
    shpeft.apply(model, random_mask(model, ratio=0.1))
    assert {n: p.shape for n, p in plain_parameters(model).items()} == names
    assert model_fingerprint(model) == fingerprint
    assert model_fingerprint(make_tiny_vit(num_classes=4)) != model_fingerprint(make_tiny_vit())


def test_trained_bias_of_a_tuned_layer_round_trips(tmp_path):
    """Extras are saved under their plain names, so a wrapped layer's trained bias loads into a plain model."""
    model = make_tiny_vit()
    shpeft.apply(model, random_mask(model))
    bias = model.blocks[0].attn.qkv.base.bias.requires_grad_(True)
    with torch.no_grad():
        bias.add_(1.0)
    path = shpeft.save_adapter(model, tmp_path / "a.safetensors")
    assert "blocks.0.attn.qkv.bias" in shpeft.read_adapter(path).extras
    loaded = shpeft.load_adapter(make_tiny_vit(), path)
    x = IMAGES
    assert torch.equal(loaded(x), model(x))
    trainable = lambda m: {n for n, p in plain_parameters(m).items() if p.requires_grad}  # noqa: E731
    assert trainable(loaded) == trainable(model) == {"blocks.0.attn.qkv.bias", "head.weight", "head.bias"}


# -- the inspect command -------------------------------------------------------------------------

def not_an_adapter(tmp_path, kind):
    path = tmp_path / f"{kind}.safetensors"
    if kind == "text":
        path.write_text("hello")
    elif kind == "plain_safetensors":  # what the runner writes for non-sparse methods
        save_file({"head.weight": torch.ones(3, 16)}, str(path))
    elif kind == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind", ["text", "plain_safetensors", "directory", "missing"])
def test_inspect_on_a_non_adapter_says_error_and_exits_2(tmp_path, capsys, kind):
    path = not_an_adapter(tmp_path, kind)
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_inspect_on_bad_metadata_says_error_and_debug_shows_the_cause(adapter, capsys):
    bad = rewritten(adapter, shapes="{not json")
    with pytest.raises(SystemExit):
        main(["inspect", str(bad)])
    assert capsys.readouterr().err.startswith("error: adapter metadata 'shapes' is not valid JSON")
    with pytest.raises(shpeft.InvalidAdapterError):
        main(["inspect", str(bad), "--debug"])


def test_inspect_as_a_process(adapter):
    """The real entry point: exit code 2 and one stderr line, no traceback."""
    bad = rewritten(adapter, backbone_params="x")
    run = subprocess.run([sys.executable, "-m", "shpeft", "inspect", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr == "error: adapter metadata 'backbone_params' is not a positive int: 'x'\n"


def test_inspect_reports_the_ratio_of_a_file_saved_without_backbone_params(adapter, capsys):
    main(["inspect", str(adapter)])
    ratio = shpeft.read_adapter(adapter).k / shpeft.num_backbone_parameters(make_tiny_vit())
    assert f"ratio of the backbone: {ratio:.3e}\n" in capsys.readouterr().out
