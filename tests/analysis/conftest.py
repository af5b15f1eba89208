"""A fake results tree following docs/architecture.md ("Result JSON")."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

BACKBONE = "tiny_vit"
# (method, ratio or None = native) -> achieved ratio, {dataset: per-seed test macro-F1 (None = failed run)}
GRID = {
    ("full", None): (1.0, {"covid_ct": [0.80, 0.82, 0.84], "chaoyang": [0.70, 0.72, 0.74]}),
    ("linear", None): (0.0, {"covid_ct": [0.60, 0.62, 0.64], "chaoyang": [0.50, 0.52, 0.54]}),
    ("lora", 1e-4): (1.1e-4, {"covid_ct": [0.81, 0.83, 0.85], "chaoyang": [0.71, 0.73, None]}),
    ("lora", None): (3e-3, {"covid_ct": [0.84, 0.85, 0.86], "chaoyang": [0.75, 0.76, 0.77]}),
    ("shpeft", 1e-4): (1e-4, {"covid_ct": [0.83, 0.84, 0.85], "chaoyang": [0.79, 0.80, 0.81]}),
    ("shpeft", 1e-3): (1e-3, {"covid_ct": [0.85, 0.86, 0.87], "chaoyang": [0.78, 0.79, 0.80]}),
    ("spt", 1e-4): (1e-4, {"covid_ct": [None, None, None], "chaoyang": [0.60, 0.61, 0.62]}),
    ("shpeft-ts", 1e-4): (1e-4, {"covid_ct": [0.70, 0.71, 0.72], "chaoyang": [0.65, 0.66, 0.67]}),
    ("shpeft-ta-l2", 1e-4): (1e-4, {"covid_ct": [0.75, 0.76, 0.77], "chaoyang": [0.68, 0.69, 0.70]}),
}
UNREACHABLE = ("vpt-deep", 1e-5)
ACC_OFFSET = 0.05  # test accuracy = macro-F1 + ACC_OFFSET


def tag(ratio: float | None) -> str:
    return "native" if ratio is None else f"{ratio:g}"


def run_json(dataset: str, method: str, ratio: float | None, seed: int, achieved: float,
             f1: float | None, status: str = "ok") -> dict:
    status = status if f1 is not None or status != "ok" else "failed"
    result = {
        "schema": 1, "status": status, "error": None if status == "ok" else f"{status}: loss is NaN\nTraceback ...",
        "config": {"dataset": dataset, "backbone": BACKBONE, "method": method, "ratio": ratio, "seed": seed,
                   "epochs": 2, "batch_size": 8, "lr": None},
        "budget": {"target_ratio": ratio, "achieved_ratio": achieved, "trainable": 10, "backbone_params": 1000,
                   "head_params": 20, "knob": "rank", "knob_value": 1, "reachable": status != "unreachable",
                   "note": ""},
        "provenance": {"versions": {"torch": "2.14.1"}, "git_commit": "abc1234", "git_dirty": False,
                       "device": "cpu", "hostname": "box", "python": "3.12", "started": f"2026-11-2{seed}T00:00:00"},
    }
    result["config"]["identity"] = dict(result["config"])
    if status == "ok":
        metric = {"macro_f1": f1, "accuracy": f1 + ACC_OFFSET, "balanced_accuracy": f1, "macro_auc": 0.9,
                  "per_class_f1": [f1, f1]}
        result["metrics"] = {"test": metric, "val": metric, "best_epoch": 1, "history": [{"epoch": 0}]}
        result["perf"] = {"wall_s": 1.0, "train_img_per_s": 100.0, "peak_mem_bytes": 0}
    return result


def write(root: Path, result: dict) -> Path:
    c = result["config"]
    path = root / c["dataset"] / BACKBONE / c["method"] / f"r{tag(c['ratio'])}" / f"s{c['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return path


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """The GRID (3 seeds, 2 datasets), an unreachable method, and one malformed file."""
    root = tmp_path / "results" / "runs"
    for (method, ratio), (achieved, per_dataset) in GRID.items():
        for dataset, values in per_dataset.items():
            for seed, f1 in enumerate(values):
                write(root, run_json(dataset, method, ratio, seed, achieved, f1))
    for dataset in ("covid_ct", "chaoyang"):
        for seed in range(3):
            write(root, run_json(dataset, *UNREACHABLE, seed, 2e-4, None, status="unreachable"))
    bad = root / "covid_ct" / BACKBONE / "lora" / "r0.001" / "s0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema": 1, "status": "ok", "config": {')
    return root
