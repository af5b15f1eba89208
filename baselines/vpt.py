"""Visual Prompt Tuning (Jia et al., "Visual Prompt Tuning", ECCV 2022): VPT-shallow and VPT-deep.

Learnable prompt tokens are inserted right after the class token, ``[CLS, prompts, patches]``,
after the position embeddings (prompts get none). VPT-shallow inserts one set at the input of
the first block; VPT-deep gives every block a fresh set that replaces the previous block's
prompt outputs. Prompts are dropped before pooling, so the head sees exactly what timm's
``forward_head`` would compute from the CLS / patch tokens. Only the prompts and the head train.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .registry import TOKENS, PeftMethod, Recipe, freeze_all_but_head, register

MAX_PROMPTS = 200  # largest prompt length of the paper's sweep {1, 5, 10, 50, 100, 200}


class PromptedViT(nn.Module):
    """A timm ``VisionTransformer`` with prompt tokens; reuses its submodules unchanged.

    ``prompts`` has shape ``(sets, length, dim)``: one set (shallow) or one per block (deep).
    The classifier moves to ``self.head`` (the ViT keeps an ``Identity``), so parameter names
    are ``head.*`` for the head, ``prompts`` and ``vit.*`` for the frozen backbone. Prompts
    follow all prefix tokens (CLS, and register tokens if any), so timm's pooling is unchanged.
    """

    def __init__(self, vit: nn.Module, length: int, deep: bool, dropout: float):
        super().__init__()
        dim, patch = vit.embed_dim, vit.patch_embed.patch_size
        sets, like = (len(vit.blocks) if deep else 1), vit.patch_embed.proj.weight
        self.head = vit.head
        vit.head = nn.Identity()
        self.vit = vit
        self.prompts = nn.Parameter(torch.empty(sets, length, dim, device=like.device, dtype=like.dtype))
        # Xavier-uniform bound of the VPT code: fan_in = 3 * patch area, fan_out = dim.
        bound = math.sqrt(6.0 / (3 * math.prod(patch) + dim))
        nn.init.uniform_(self.prompts, -bound, bound)
        self.prompt_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit, n, length = self.vit, self.vit.num_prefix_tokens, self.prompts.shape[1]
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        for i, block in enumerate(vit.blocks):
            if i < len(self.prompts):  # insert (block 0) or replace (deep, later blocks)
                prompts = self.prompt_dropout(self.prompts[i]).expand(x.shape[0], -1, -1)
                keep = n if i == 0 else n + length
                x = torch.cat([x[:, :n], prompts, x[:, keep:]], dim=1)
            x = block(x)
        x = vit.norm(x)
        x = torch.cat([x[:, :n], x[:, n + length:]], dim=1)  # drop prompts before pooling
        return self.head(vit.forward_head(x, pre_logits=True))


class VisualPromptTuning(PeftMethod):
    """VPT with prompt length as the knob; trainable count is ``sets * length * embed_dim``.

    The paper tunes the length per dataset from {1, 5, 10, 50, 100, 200}; 10 is our native
    default for both variants. Prompt dropout is the released configs': 0.1 for VPT-deep, 0.0
    for VPT-shallow. Prompts are kept out of weight decay (as timm's tokens).
    """

    knob = "prompts"
    native = 10
    no_decay_names = (*TOKENS, "prompts")
    recipe = Recipe(source="VPT (KMnP/vpt) prompt dropout per variant; lr/wd/drop-path: NOAH/PETL_Vision ViT-B")

    def __init__(self, deep: bool, dropout: float):
        self.deep, self.dropout = deep, dropout

    def hparams(self) -> dict[str, Any]:
        return {"deep": self.deep, "dropout": self.dropout}

    def candidates(self, model: nn.Module) -> list[int]:
        return list(range(1, MAX_PROMPTS + 1))

    def count(self, model: nn.Module, knob: int) -> int:
        return (len(model.blocks) if self.deep else 1) * knob * model.embed_dim

    def attach(self, model: nn.Module, knob: int, calib: Iterable | None) -> nn.Module:
        freeze_all_but_head(model)
        return PromptedViT(model, knob, self.deep, self.dropout)


register("vpt-shallow", VisualPromptTuning(deep=False, dropout=0.0))
register("vpt-deep", VisualPromptTuning(deep=True, dropout=0.1))
