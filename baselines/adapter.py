"""Bottleneck adapters on timm ViT blocks: Houlsby et al. (ICML 2019) and AdaptFormer
(Chen et al., NeurIPS 2022).

Both insert the same :class:`Bottleneck` ``up(dropout(act(down(.))))`` of width ``width`` and
wrap a block's sublayer (``block.attn`` / ``block.mlp``) in :class:`Adapted`; they differ in
where the branch reads from (``READS``) and how it is scaled. The up-projection starts at zero,
so an adapted model starts as exactly the frozen one. Wrapping renames the sublayer's weights
(``blocks.N.mlp.fc1.weight`` -> ``blocks.N.mlp.sublayer.fc1.weight``, or
``blocks.N.mlp.sublayer.mlp.fc1.weight`` with the sublayer's norm moved inside when the branch
reads the raw residual); ``head`` is untouched.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor, nn

from shpeft import HEAD, in_modules

from .registry import PeftMethod, Recipe, register, train_only

# What the adapter branch reads: the sublayer's output (sequential), the sublayer's normalised
# input, or the block's raw residual stream before the sublayer's LayerNorm (both parallel).
READS = ("output", "normed", "residual")
NORM_OF = {"attn": "norm1", "mlp": "norm2"}  # the pre-norm of each timm Block sublayer


class Bottleneck(nn.Module):
    """``up(dropout(act(down(x))))``: dim -> width -> dim, up zero-initialised (the branch is 0)."""

    def __init__(self, dim: int, width: int, act: type[nn.Module], dropout: float = 0.0) -> None:
        super().__init__()
        self.down = nn.Linear(dim, width)
        self.act = act()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(width, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    @staticmethod
    def size(dim: int, width: int) -> int:
        """Parameters of one bottleneck (weights and biases of down and up)."""
        return 2 * dim * width + width + dim

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.dropout(self.act(self.down(x))))


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
        self, *, sites: Sequence[str], reads: str, scale: float, act: type[nn.Module], train_norms: bool,
        dropout: float,
    ) -> None:
        if reads not in READS:
            raise ValueError(f"reads must be one of {READS}, got {reads!r}")
        self.sites = tuple(sites)
        self.reads = reads
        self.scale = scale
        self.act = act
        self.train_norms = train_norms
        self.dropout = dropout

    def hparams(self) -> dict[str, Any]:
        return {"sites": list(self.sites), "reads": self.reads, "scale": self.scale, "act": self.act.__name__,
                "train_norms": self.train_norms, "dropout": self.dropout}

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

    def attach(self, model: nn.Module, knob: int, calib: Iterable | None) -> nn.Module:
        norms, dim = self.norms(model), self.dim(model)
        reference = model.blocks[0].mlp.fc2.weight
        for block in model.blocks:
            for site in self.sites:
                sublayer = getattr(block, site)
                if self.reads == "residual":  # the norm moves inside, so the branch sees the raw stream
                    sublayer = nn.Sequential(OrderedDict(norm=getattr(block, NORM_OF[site]), **{site: sublayer}))
                    setattr(block, NORM_OF[site], nn.Identity())
                adapter = Bottleneck(dim, knob, self.act, self.dropout).to(reference.device, reference.dtype)
                setattr(block, site, Adapted(sublayer, adapter, self.reads != "output", self.scale))
        train_only(model, lambda name: ".adapter." in name)
        for m in norms:
            m.requires_grad_(True)
        return model


@register("adapter")
class Houlsby(BottleneckAdapter):
    """Houlsby et al. 2019: a sequential adapter on the output of the attention and of the
    MLP sublayer of every block (two per block), GELU bottleneck, as in their adapter-bert code.

    ``train_norms`` (default True) also trains every backbone LayerNorm, as the paper and
    adapter-bert do (Fig. 2: "this includes the adapter, the layer normalization parameters, and
    the final classification layer"; the vision ports train the adapters only); the norms are
    kept out of weight decay, as adapter-bert's optimizer does. No dropout in the bottleneck
    (adapter-bert has none). Deviation: Houlsby initialise near identity with small random
    weights; the up-projection here is exactly zero (the limit of that init).
    """

    recipe = Recipe(source="adapter-bert: no decay on biases and LayerNorms; lr/wd/drop-path: NOAH/PETL_Vision ViT-B")

    def __init__(self, train_norms: bool = True) -> None:
        super().__init__(sites=("attn", "mlp"), reads="output", scale=1.0, act=nn.GELU, train_norms=train_norms,
                         dropout=0.0)


@register("adaptformer")
class AdaptFormer(BottleneckAdapter):
    """AdaptFormer (Chen et al. 2022): a ReLU bottleneck parallel to the MLP of every block,
    scaled by s = 0.1, with dropout 0.1 after the ReLU. As the official code
    (``custom_modules.py``, ``ffn_adapter_layernorm_option="none"``) and PETL_Vision, the branch
    reads the raw residual stream: ``x + mlp(ln(x)) + s * up(drop(relu(down(x))))``;
    ``reads="normed"`` is the paper's Eq. 3 (the branch reads ln(x)). Native width 64 (ViT-B).
    Deviation: the official block adds the branch after drop-path; here drop-path covers it too.
    """

    recipe = Recipe(source="AdaptFormer / PETL_Vision ViT-B: AdamW lr 1e-3, wd 1e-4, drop-path 0.1")

    def __init__(self, scale: float = 0.1, reads: str = "residual", dropout: float = 0.1) -> None:
        super().__init__(sites=("mlp",), reads=reads, scale=scale, act=nn.ReLU, train_norms=False, dropout=dropout)
