"""Shared scaffolding of the baseline tests: the toy ViT, a batch, a few training steps."""
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer


def tiny_vit(seed: int = 0, **kwargs) -> VisionTransformer:
    """A 2-block, 16-wide timm ViT on 16x16 images with 3 classes (ViT-B's module structure)."""
    torch.manual_seed(seed)
    return VisionTransformer(
        img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=3, **kwargs
    )


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])


def train_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 2) -> None:
    """AdamW (no weight decay) on the trainable parameters. Two steps: while a zero-initialised
    factor (LoRA B, adapter up) is zero, its partner gets no gradient on the first step."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
