
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import shpeft
from shpeft.__main__ import inspect_adapter, main

from .conftest import make_tiny_vit
from .test_sparse import random_mask


def trained_tiny(seed=0):
    model = shpeft.apply(make_tiny_vit(), random_mask(make_tiny_vit(), seed=seed))
    with torch.no_grad():
        for site in shpeft.delta_sites(model).values():
            site.delta.normal_()
        model.head.weight.normal_()
    return model


def test_save_load_round_trip_is_exact(tmp_path, batches):
    model = trained_tiny()
    path = shpeft.save_adapter(model, tmp_path / "a.safetensors")
    loaded = shpeft.load_adapter(make_tiny_vit(), path)
    x, _ = batches[0]
    assert torch.equal(loaded(x), model(x))
    for name, site in shpeft.delta_sites(model).items():
        other = shpeft.delta_sites(loaded)[name]
        assert torch.equal(site.indices, other.indices) and torch.equal(site.delta, other.delta)
    assert torch.equal(loaded.head.weight, model.head.weight)
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }


def test_adapter_for_vit_b16_at_1e4_is_kilobytes(tmp_path):
    torch.manual_seed(0)
    model = VisionTransformer(  # the CLIP ViT-B/16 image tower's shapes, random weights
        img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, pre_norm=True, num_classes=3
    )
    backbone = shpeft.num_backbone_parameters(model)
    mask = shpeft.select(shpeft.importance(model, kind="task_agnostic"), 1e-4, total=backbone)
    assert mask.k == round(1e-4 * backbone)
    shpeft.apply(model, mask)
    path = shpeft.save_adapter(model, tmp_path / "vitb.safetensors", backbone_params=backbone)
    size = path.stat().st_size
    assert size < 200_000, f"{size} bytes"  # ~8.6k x (int32 index + fp32 delta) + head + metadata
    info = inspect_adapter(str(path))
    assert info["k"] == mask.k and info["ratio"] == pytest.approx(1e-4, rel=1e-3)


def test_mismatched_corrupt_and_missing_adapters_raise(tmp_path):
    path = shpeft.save_adapter(trained_tiny(), tmp_path / "a.safetensors")
    wider = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    with pytest.raises(shpeft.AdapterMismatchError, match="has shape"):
        shpeft.load_adapter(wider, path)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(shpeft.AdapterMismatchError, match="not a readable safetensors adapter"):
        shpeft.load_adapter(make_tiny_vit(), truncated)
    with pytest.raises(FileNotFoundError, match="adapter file not found"):
        shpeft.load_adapter(make_tiny_vit(), tmp_path / "nope.safetensors")
    with pytest.raises(shpeft.AdapterMismatchError, match="already carries sparse deltas"):
        shpeft.load_adapter(trained_tiny(), path)
    with pytest.raises(ValueError, match="no sparse deltas"):
        shpeft.save_adapter(make_tiny_vit(), tmp_path / "b.safetensors")


def test_cli_inspect_prints_totals(tmp_path, capsys):
    model = trained_tiny()
    path = shpeft.save_adapter(model, tmp_path / "a.safetensors", backbone_params=9776)
    main(["inspect", str(path)])
    out = capsys.readouterr().out
    k = sum(s.delta.numel() for s in shpeft.delta_sites(model).values())
    assert f"{k}  selected weights in total" in out
    assert "ratio of the backbone: " in out and "extra trained parameters" in out
