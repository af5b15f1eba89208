import time

import huggingface_hub.constants as hf_constants
import open_clip
import pytest
import safetensors.torch
import torch
from open_clip.transformer import QuickGELU
from torch import nn

from benchmark.backbones import (
    BackboneUnavailableError,
    CheckpointError,
    create_backbone,
    data_config,
)
from shpeft import num_backbone_parameters

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}


def assert_same_backbone(a: nn.Module, b: nn.Module) -> None:
    sa, sb = backbone_state(a), backbone_state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)


def perturb_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Make every tensor matter (LayerNorms start at 1/0), so a wrong mapping shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return module.eval()


def test_tiny_vit_structure():
    model = create_backbone("tiny_vit", 5)
    names = dict(model.named_modules())
    for i in range(4):
        for sub in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            assert isinstance(names[f"blocks.{i}.{sub}"], nn.Linear)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 5
    assert model.cls_token is not None and not isinstance(model.norm_pre, nn.Identity)
    assert 100_000 <= num_backbone_parameters(model) <= 500_000
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    cfg = data_config(model)
    assert cfg["input_size"] == (3, 32, 32) and cfg["mean"] == CLIP_MEAN


def test_tiny_vit_is_deterministic():
    torch.manual_seed(1)
    a = create_backbone("tiny_vit", 3)
    torch.manual_seed(2)
    b = create_backbone("tiny_vit", 3)
    assert_same_backbone(a, b)  # 'pretrained' tiny backbone: the same for every run seed
    assert not torch.equal(a.head.weight, b.head.weight)  # the head follows the run seed
    torch.manual_seed(3)
    c = create_backbone("tiny_vit", 3, pretrained=False)
    torch.manual_seed(3)
    d = create_backbone("tiny_vit", 3, pretrained=False)
    assert_same_backbone(c, d)
    assert not torch.equal(a.blocks[0].attn.qkv.weight, c.blocks[0].attn.qkv.weight)


def test_clip_vit_b16_without_weights_on_meta():
    with torch.device("meta"):
        model = create_backbone("clip_vit_b16", 4, pretrained=False)
        with pytest.raises(ValueError, match="meta"):
            create_backbone("clip_vit_b16", 4)
    assert num_backbone_parameters(model) == 85_799_424  # CLIP ViT-B/16 image tower without its projection
    assert model.head.out_features == 4
    assert type(model.blocks[0].mlp.act).__name__ == "QuickGELU"
    cfg = data_config("clip_vit_b16")
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == CLIP_MEAN
    with torch.device("meta"):  # open_clip:<arch> rebuilds the same timm structure
        other = create_backbone("open_clip:ViT-B-16/openai", 4, pretrained=False)
    assert {k: v.shape for k, v in other.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_timm_names():
    model = create_backbone("timm:vit_tiny_patch16_224.augreg_in21k", 2, pretrained=False, image_size=32)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    assert data_config(model)["mean"] == (0.5, 0.5, 0.5)
    with pytest.raises(KeyError, match="not a VisionTransformer"):
        create_backbone("timm:resnet18", 2, pretrained=False)
    with pytest.raises(KeyError, match="clip_vit_b16"):
        create_backbone("no_such_backbone", 2)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_checkpoint_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    source = create_backbone("tiny_vit", 7, pretrained=False)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(source.state_dict(), path)
    else:  # a training checkpoint: wrapped, with DDP prefixes
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    loaded = create_backbone("tiny_vit", 3, checkpoint=path)
    assert_same_backbone(source, loaded)
    assert loaded.head.out_features == 3


def test_image_size_resamples_position_embeddings():
    model = create_backbone("tiny_vit", 3, image_size=64)
    assert model.pos_embed.shape == (1, 1 + 8 * 8, 64)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert data_config(model)["input_size"] == (3, 64, 64)


class _OpenAIClip(nn.Module):
    """The layout of an OpenAI CLIP checkpoint: `visual.*` next to text-tower tensors."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.token_embedding = nn.Embedding(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")  # TorchScript is deprecated
@pytest.mark.parametrize("fmt", ["open_clip_bin", "openai_torchscript"])
def test_clip_checkpoint_conversion_matches_open_clip(tmp_path, fmt):
    torch.manual_seed(0)
    visual = perturb_(open_clip.transformer.VisionTransformer(
        image_size=32, patch_size=8, width=64, layers=4, heads=4, mlp_ratio=2.0, output_dim=16, act_layer=QuickGELU))
    clip = _OpenAIClip(visual).eval()
    x = torch.randn(3, 3, 32, 32)
    path = tmp_path / ("open_clip_pytorch_model.bin" if fmt == "open_clip_bin" else "ViT-tiny.pt")
    if fmt == "open_clip_bin":
        torch.save(clip.state_dict(), path)
    else:
        torch.jit.trace(clip, x, check_trace=False).save(str(path))
    model = create_backbone("tiny_vit", 3, checkpoint=path).eval()
    with torch.no_grad():  # timm's converter maps CLIP's `proj` to the (replaced) head: apply it by hand
        assert torch.allclose(pre_logits(model, x) @ visual.proj, visual(x), atol=1e-5)


def test_open_clip_vit_b16_checkpoint_matches_open_clip(tmp_path):
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
    visual = perturb_(clip.visual)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(clip.state_dict(), path)
    model = create_backbone("clip_vit_b16", 3, checkpoint=path).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(pre_logits(model, x) @ visual.proj, visual(x), atol=1e-4)


def _tiny_state() -> dict[str, torch.Tensor]:
    return create_backbone("tiny_vit", 3).state_dict()


@pytest.mark.parametrize("case, match", [
    ("missing_file", "no such file"),
    ("truncated_safetensors", "cannot be read"),
    ("truncated_pth", "cannot be read"),
    ("not_a_checkpoint", "cannot be read"),
    ("missing_keys", r"missing \(4\): blocks\.3\.attn\.proj\.bias"),
    ("unexpected_keys", r"unexpected \(1\): extra\.weight"),
    ("wrong_shapes", r"wrong shape \(1\): blocks\.0\.mlp\.fc1\.weight \(3, 3\) != \(128, 64\)"),
])
def test_bad_checkpoints_raise_clear_errors(tmp_path, case, match):
    state = _tiny_state()
    path = tmp_path / ("w.safetensors" if case == "truncated_safetensors" else "w.pth")
    if case == "truncated_safetensors":
        safetensors.torch.save_file(state, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "truncated_pth":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "not_a_checkpoint":
        path.write_text("hello")
    elif case == "missing_keys":
        torch.save({k: v for k, v in state.items() if not k.startswith("blocks.3.attn")}, path)
    elif case == "unexpected_keys":
        torch.save({**state, "extra.weight": torch.zeros(2)}, path)
    elif case == "wrong_shapes":
        torch.save(state | {"blocks.0.mlp.fc1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointError, match=match) as err:
        create_backbone("tiny_vit", 3, checkpoint=path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("offline_by", ["env", "unreachable"])
@pytest.mark.parametrize("name, hub_id", [
    ("clip_vit_b16", "timm/vit_base_patch16_clip_224.openai"),
    ("open_clip:ViT-B-16/openai", "timm/vit_base_patch16_clip_224.openai"),
])
def test_offline_pretrained_fails_fast_with_instructions(monkeypatch, tmp_path, offline_by, name, hub_id):
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    if offline_by == "env":
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    else:  # a closed local port: the probe fails at once, with or without a network
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(BackboneUnavailableError, match="checkpoint=PATH") as err:
        create_backbone(name, 3)
    assert time.perf_counter() - start < 20
    assert hub_id in str(err.value) and "--checkpoint" in str(err.value)
