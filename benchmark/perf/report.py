"""The results of a run as a Markdown table and a CSV, each with a provenance header."""
from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmark.paths import backbone_tag
from benchmark.provenance import provenance

from .measure import REFERENCES, PerfConfig

COLUMNS = (
    "method", "knob", "knob_value", "target_ratio", "achieved_ratio", "reachable", "trainable",
    "ms_per_step", "ms_min", "ms_per_image", "img_per_s", "peak_mem_bytes", "mem_kind", "opt_state_bytes",
    "prepare_s", "repeats", *(f"{m}_vs_{ref}" for ref in REFERENCES for m in ("time", "mem")), "note",
)


def _num(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _count(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One line per row: knob, target ratio, trainable, median and min ms/step, ms/image, img/s, peak
    memory, optimizer state, and the median step time and peak memory relative to each reference."""
    head = ["method", "knob", "ratio", "trainable", "ms/step", "min ms", "ms/img", "img/s", "peak mem", "opt state",
            *(f"{m}/{ref}" for ref in REFERENCES for m in ("time", "mem")), "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["method"], f"{r['knob']}={r['knob_value']}" if r.get("knob") else "", _num(r.get("target_ratio"), "g"),
            _count(r.get("trainable")), _num(r.get("ms_per_step"), ".1f"), _num(r.get("ms_min"), ".1f"),
            _num(r.get("ms_per_image"), ".2f"), _num(r.get("img_per_s"), ".0f"), _bytes(r.get("peak_mem_bytes")),
            _bytes(r.get("opt_state_bytes")),
            *(_num(r.get(f"{m}_vs_{ref}"), ".2f") for ref in REFERENCES for m in ("time", "mem")), r.get("note") or "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(cfg: PerfConfig, command: str) -> dict[str, Any]:
    """Command, device, versions, git commit, date and the measurement settings."""
    prov = provenance(torch.device(cfg.device))
    versions = prov["versions"]
    settings = {k: v for k, v in asdict(cfg).items() if k != "device"}
    return {
        "command": command, "device": prov["device"], "torch": versions["torch"], "timm": versions["timm"],
        "peft": versions["peft"], "git_commit": prov["git_commit"], "git_dirty": prov["git_dirty"],
        "date": prov["started"], **settings, "image_size": cfg.size,
        "threads": cfg.threads or torch.get_num_threads(), "tf32": torch.device(cfg.device).type == "cuda",
        "memory": "peak of two training steps (CUDA: max_memory_allocated above the level before the "
                  "model was built; CPU: live tensor bytes + growth of anonymous resident memory, sampled every 1 ms)",
    }


def output_stem(cfg: PerfConfig) -> str:
    """``<backbone tag>_<size>px_<device>_<dtype>_b<batch>[_compile]``."""
    device = torch.device(cfg.device).type
    return f"{backbone_tag(cfg.backbone)}_{cfg.size}px_{device}_{cfg.dtype}_b{cfg.batch_size}" + ("_compile" if cfg.compile else "")


def write_outputs(rows: list[dict[str, Any]], meta: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    """``<stem>.csv`` (``# key: value`` header lines, then one row per method) and ``<stem>.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    with csv_path.open("w", newline="") as f:
        f.writelines(f"# {k}: {v}\n" for k, v in meta.items())
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# Training-step performance: {stem}", ""]
    lines += [f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in meta.items()]
    md_path.write_text("\n".join([*lines, "", markdown_table(rows), ""]))
    return csv_path, md_path
