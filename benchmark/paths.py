"""Where a run's result lives (shared by the runner and the Snakemake DAG; import-light)."""
from __future__ import annotations

from pathlib import Path


def ratio_tag(ratio: float | str | None) -> str:
    """``native`` for a method's own size, else the ratio as ``%g`` (1e-05, 0.0001, 0.01)."""
    return "native" if ratio in (None, "native") else f"{float(ratio):g}"


def backbone_tag(backbone: str) -> str:
    return backbone.replace(":", "-").replace("/", "-")


def run_relpath(dataset: str, backbone: str, method: str, ratio: float | str | None, seed: int) -> Path:
    """``<dataset>/<backbone>/<method>/r<ratio>/s<seed>.json``."""
    return Path(dataset) / backbone_tag(backbone) / method / f"r{ratio_tag(ratio)}" / f"s{seed}.json"
