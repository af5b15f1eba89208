import pytest
import torch
from timm.models.vision_transformer import VisionTransformer


def make_tiny_vit(seed: int = 0, num_classes: int = 3) -> VisionTransformer:
    torch.manual_seed(seed)
    return VisionTransformer(
        img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0,
        num_classes=num_classes,
    )


@pytest.fixture
def tiny_vit() -> VisionTransformer:
    return make_tiny_vit()


@pytest.fixture
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(6, 3, 16, 16, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(3)]
