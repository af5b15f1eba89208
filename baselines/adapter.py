"""Bottleneck adapters on timm ViT blocks: Houlsby et al. (ICML 2019) and AdaptFormer
(Chen et al., NeurIPS 2022).

Both insert the same :class:`Bottleneck` ``up(act(down(.)))`` of width ``width`` and wrap a
block's sublayer (``block.attn`` / ``block.mlp``) in :class:`Adapted`; they differ only in
where the branch reads from and how it is scaled. The up-projection starts at zero, so an
adapted model starts as exactly the frozen one. Wrapping renames the sublayer's weights
(``blocks.N.mlp.fc1.weight`` -> ``blocks.N.mlp.sublayer.fc1.weight``); ``head`` is untouched.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import Tensor, nn

from shpeft import in_modules

from .registry import HEAD, PeftMethod, freeze_all_but_head, register


class Bottleneck(nn.Module):
    """``up(act(down(x)))``: dim -> width -> dim, with up zero-initialised (the branch is 0)."""

    def __init__(self, dim: int, width: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.down = nn.Linear(dim, width)
        self.act = act()
        self.up = nn.Linear(width, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    @staticmethod
    def size(dim: int, width: int) -> int:
        """Parameters of one bottleneck (weights and biases of down and up)."""
        return 2 * dim * width + width + dim

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.act(self.down(x)))


class Adapted(nn.Module):
    """A frozen sublayer f plus a scaled bottleneck branch, before the block's residual add:
    sequential ``f(x) + s * adapter(f(x))`` or parallel ``f(x) + s * adapter(x)``."""

    def __init__(self, sublayer: nn.Module, adapter: Bottleneck, parallel: bool, scale: float) -> None:
        super().__init__()
        self.sublayer = sublayer
        self.adapter = adapter
        self.parallel = parallel
        self.scale = scale

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        h = self.sublayer(x, *args, **kwargs)
        return h + self.scale * self.adapter(x if self.parallel else h)


class BottleneckAdapter(PeftMethod):
    """Bottleneck adapters of width ``width`` on the sublayers ``sites`` of every block."""

    knob = "width"
    native = 64

    def __init__(
        self, *, sites: Sequence[str], parallel: bool, scale: float, act: type[nn.Module], train_norms: bool
    ) -> None:
        self.sites = tuple(sites)
        self.parallel = parallel
        self.scale = scale
        self.act = act
        self.train_norms = train_norms

    @staticmethod
    def dim(model: nn.Module) -> int:
        """Width of the residual stream."""
        return model.blocks[0].mlp.fc2.out_features

    def norms(self, model: nn.Module) -> list[nn.LayerNorm]:
        """The backbone LayerNorms trained alongside the adapters (none unless ``train_norms``)."""
        if not self.train_norms:
            return []
        return [
            m for name, m in model.named_modules()
            if isinstance(m, nn.LayerNorm) and not in_modules(name, HEAD)
        ]

    def candidates(self, model: nn.Module) -> Sequence[int]:
        """Every width from 1 to the residual width."""
        return range(1, self.dim(model) + 1)

    def count(self, model: nn.Module, knob: int) -> int:
        adapters = len(model.blocks) * len(self.sites) * Bottleneck.size(self.dim(model), knob)
        return adapters + sum(p.numel() for m in self.norms(model) for p in m.parameters())

    def apply(self, model: nn.Module, knob: int, calib: Iterable | None) -> nn.Module:
        norms, dim = self.norms(model), self.dim(model)
        reference = model.blocks[0].mlp.fc2.weight
        freeze_all_but_head(model)
        for block in model.blocks:
            for site in self.sites:
                adapter = Bottleneck(dim, knob, self.act).to(reference.device, reference.dtype)
                setattr(block, site, Adapted(getattr(block, site), adapter, self.parallel, self.scale))
        for m in norms:
            m.requires_grad_(True)
        return model


@register("adapter")
class Houlsby(BottleneckAdapter):
    """Houlsby et al. 2019: a sequential adapter on the output of the attention and of the
    MLP sublayer of every block (two per block), GELU bottleneck, as in their adapter-bert code.

    ``train_norms`` (default True) also trains every backbone LayerNorm, as the paper does
    (Fig. 2: "this includes the adapter, the layer normalization parameters, and the final
    classification layer"). Deviation: Houlsby initialise near identity with small random
    weights; the up-projection here is exactly zero (the limit of that init).
    """

    def __init__(self, train_norms: bool = True) -> None:
        super().__init__(sites=("attn", "mlp"), parallel=False, scale=1.0, act=nn.GELU, train_norms=train_norms)


@register("adaptformer")
class AdaptFormer(BottleneckAdapter):
    """AdaptFormer (Chen et al. 2022, Eq. 3-4): a ReLU bottleneck parallel to the MLP of every
    block, reading the MLP's normalised input and scaled by s = 0.1:
    ``x + mlp(ln(x)) + s * up(relu(down(ln(x))))``. Native width 64 (the paper's ViT-B setting).
    """

    def __init__(self, scale: float = 0.1) -> None:
        super().__init__(sites=("mlp",), parallel=True, scale=scale, act=nn.ReLU, train_norms=False)
