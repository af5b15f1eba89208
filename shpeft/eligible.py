"""Which weights SH-PEFT may tune: the projection matrices of the transformer blocks."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from torch import nn

HEAD: tuple[str, ...] = ("head",)  # the classifier's module name(s): always trained, never counted in the ratio

# timm ViTs (blocks.N.attn.qkv / attn.proj / mlp.fc1 / mlp.fc2) and open_clip's visual tower
# (transformer.resblocks.N.attn.in_proj_weight / attn.out_proj / mlp.c_fc / mlp.c_proj).
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"(^|\.)blocks\.\d+\.attn\.(qkv|proj)\.weight$",
    r"(^|\.)blocks\.\d+\.mlp\.fc[12]\.weight$",
    r"(^|\.)resblocks\.\d+\.attn\.(in_proj_weight|out_proj\.weight)$",
    r"(^|\.)resblocks\.\d+\.mlp\.c_(fc|proj)\.weight$",
)


def in_modules(name: str, modules: Iterable[str]) -> bool:
    """True if ``name`` (a parameter or module name) is one of ``modules`` or lies inside one."""
    return any(name == m or name.startswith(m + ".") for m in modules)


def eligible_parameters(
    model: nn.Module, patterns: Sequence[str] | None = None
) -> dict[str, nn.Parameter]:
    """Parameters of ``model`` whose full name matches any regex in ``patterns``.

    Raises ``ValueError`` when nothing matches, so a wrong pattern never selects an empty set.
    """
    regexes = [re.compile(p) for p in (patterns or DEFAULT_PATTERNS)]
    found = {
        name: p
        for name, p in model.named_parameters()
        if any(r.search(name) for r in regexes)
    }
    if not found:
        names = [n for n, _ in model.named_parameters()][:8]
        raise ValueError(
            f"no eligible weights in {type(model).__name__}: no parameter name matches "
            f"{list(p.pattern for p in regexes)}; first parameter names: {names}"
        )
    return found
