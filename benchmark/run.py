"""One benchmark cell: (dataset, backbone, method, ratio, seed) -> one result JSON.

    python -m benchmark.run --dataset synthetic-medmnist --backbone tiny_vit --method shpeft --ratio 1e-2

The JSON (schema in docs/architecture.md) carries the metrics, the trainable budget that
was met, throughput, peak memory and full provenance. It is written atomically; a finished
run with the same config is skipped unless ``--force``. A NaN loss is recorded as a failed
run (exit code 0, so a DAG goes on); missing data or weights raise with an actionable message.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import baselines
import shpeft
from benchmark import data
from benchmark.backbones import create_backbone, data_config
from benchmark.paths import run_relpath
from benchmark.provenance import provenance
from benchmark.train import (
    DeviceBatches,
    NonFiniteLossError,
    TrainConfig,
    evaluate,
    fit,
)

SCHEMA = 1
FINISHED = ("ok", "unreachable")


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    method: str
    backbone: str = "clip_vit_b16"
    ratio: float | None = None  # trainable backbone weights / backbone weights; None = method's native size
    seed: int = 0
    epochs: int = 20
    batch_size: int = 64
    lr: float | None = None  # None = the method's recipe (baselines registry) x lr_scale
    head_lr: float | None = None  # None = the method's recipe x lr_scale
    lr_scale: float = 1.0
    weight_decay: float | None = None  # None = the method's recipe
    drop_path: float | None = None  # None = the method's recipe
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    image_size: int | None = None  # None = the backbone's input size
    n_per_class: int | None = None  # data-scarce setting: this many training images per class
    calib_images: int = 1000  # images for the importance pass of data-driven methods
    augment: bool = True
    compile: bool = False
    pretrained: bool = True
    checkpoint: str | None = None
    data_root: str = "data"
    device: str = "auto"
    out: str | None = None
    save_state: str | None = None  # write the trained weights here (safetensors)
    results_root: str = "results/runs"
    progress: bool = field(default=True, compare=False)
    force: bool = field(default=False, compare=False)

    def identity(self) -> dict:
        """The fields that define the run (a rerun with equal identity is skipped)."""
        skip = {"progress", "force", "out", "results_root", "device", "save_state"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def result_path(cfg: RunConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    return Path(cfg.results_root) / run_relpath(cfg.dataset, cfg.backbone, cfg.method, cfg.ratio, cfg.seed)


def write_json_atomic(obj: dict, path: Path) -> None:
    """Write to a temp file in the same folder, then rename: never a half-written result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=True)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_mem_bytes": torch.cuda.max_memory_allocated(device), "peak_mem_kind": "cuda_max_allocated"}
    return {"peak_mem_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak_mem_kind": "process_max_rss"}


def save_trained_state(model: torch.nn.Module, path: Path) -> None:
    """The trained weights: an shpeft adapter for sparse methods, else every trainable tensor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if shpeft.delta_sites(model):
        shpeft.save_adapter(model, path)
    else:
        trained = {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trained, str(path))


def _finished(path: Path, cfg: RunConfig) -> dict | None:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = old.get("config", {}).get("identity") == json.loads(json.dumps(cfg.identity()))
    return old if same and old.get("status") in FINISHED else None


def run(cfg: RunConfig) -> dict:
    """Run one cell and write its result JSON; return the result."""
    path = result_path(cfg)
    if not cfg.force and (old := _finished(path, cfg)):
        print(f"skip: {path} is finished with the same config (use --force to rerun)")
        return old
    method = baselines.get(cfg.method)  # unknown method: fail before loading anything
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    started = time.perf_counter()
    result = {
        "schema": SCHEMA, "status": None, "error": None,
        "config": {**dataclasses.asdict(cfg), "identity": cfg.identity()},
        "provenance": provenance(device),
    }
    data_size = cfg.image_size or 224
    splits = data.load(cfg.dataset, root=cfg.data_root, size=data_size)
    num_classes = data.meta(cfg.dataset, cfg.data_root, data_size)["num_classes"]  # user folders: known once read
    if cfg.n_per_class:
        splits["train"] = data.subset(splits["train"], n_per_class=cfg.n_per_class, seed=cfg.seed)
    model = create_backbone(
        cfg.backbone, num_classes, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint, image_size=cfg.image_size
    ).to(device)
    dcfg = data_config(model)
    image_size = cfg.image_size or dcfg["input_size"][-1]

    def batches(split: str, train: bool = False, seed: int = 0) -> DeviceBatches:
        s = splits[split]
        return DeviceBatches(
            s.images, s.labels, batch_size=cfg.batch_size, device=device, mean=dcfg["mean"], std=dcfg["std"],
            image_size=image_size, shuffle=train, augment=train and cfg.augment, seed=seed,
        )

    calib = batches("train")
    n_calib = max(1, -(-cfg.calib_images // cfg.batch_size))
    calib_batches = [b for _, b in zip(range(n_calib), calib)]
    recipe = method.recipe
    train_cfg = TrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size,
        lr=recipe.lr * cfg.lr_scale if cfg.lr is None else cfg.lr,
        head_lr=recipe.head_lr * cfg.lr_scale if cfg.head_lr is None else cfg.head_lr,
        weight_decay=recipe.weight_decay if cfg.weight_decay is None else cfg.weight_decay,
        drop_path=recipe.drop_path if cfg.drop_path is None else cfg.drop_path,
        warmup_epochs=cfg.warmup_epochs, grad_clip=cfg.grad_clip,
        augment=cfg.augment, compile=cfg.compile, progress=cfg.progress,
    )
    result["recipe"] = recipe.asdict()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        prepare_start = time.perf_counter()
        prepared = baselines.prepare(method, model, cfg.ratio, calib_batches)
        prepare_s = time.perf_counter() - prepare_start
        result["budget"] = prepared.budget()
        result["hparams"] = {**dataclasses.asdict(train_cfg), **prepared.hparams}
        if not prepared.reachable:
            result.update(status="unreachable", error=prepared.note)
            write_json_atomic(result, path)
            return result
        fitted = fit(prepared.model, batches("train", train=True, seed=cfg.seed), batches("val"), train_cfg, num_classes,
                     no_decay=prepared.no_decay)
    except (NonFiniteLossError, shpeft.NonFiniteError) as err:  # recorded, so a DAG goes on
        result.update(status="failed", error=f"{type(err).__name__}: {err}",
                      perf={"wall_s": time.perf_counter() - started, **peak_memory(device)})
        write_json_atomic(result, path)
        return result
    result["metrics"] = {
        "test": evaluate(prepared.model, batches("test"), num_classes),
        "val": evaluate(prepared.model, batches("val"), num_classes),
        "best_epoch": fitted["best_epoch"],
        "history": fitted["history"],
    }
    result["perf"] = {
        "wall_s": time.perf_counter() - started, "prepare_s": prepare_s,
        "train_img_per_s": fitted["train_img_per_s"], **peak_memory(device),
    }
    if cfg.save_state:
        save_trained_state(prepared.model, Path(cfg.save_state))
    result["status"] = "ok"
    write_json_atomic(result, path)
    return result


def _parse_ratio(text: str) -> float | None:
    return None if text == "native" else float(text)


def _parse_bool(text: str) -> bool:
    if text.lower() not in {"true", "false", "1", "0", "yes", "no"}:
        raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
    return text.lower() in {"true", "1", "yes"}


_PARSERS = {"int": int, "float": float, "str": str, "bool": _parse_bool,
            "int | None": int, "float | None": float, "str | None": str}

HELP = {
    "dataset": "dataset name from the registry (python -m benchmark.data list)",
    "method": "PEFT method from the baselines registry",
    "backbone": "backbone name (clip_vit_b16, tiny_vit, timm:<name>, ...)",
    "ratio": "target trainable ratio of backbone weights in (0, 1], or 'native' for the method's own size",
    "lr": "learning rate of the method's parameters (default: the method's recipe x --lr-scale)",
    "head_lr": "learning rate of the classification head (default: the method's recipe x --lr-scale)",
    "lr_scale": "multiply every method's recipe learning rates (e.g. for a small random-init model)",
    "weight_decay": "AdamW weight decay (default: the method's recipe); never on biases, norms, prompts",
    "drop_path": "stochastic depth rate of the last block (default: the method's recipe)",
    "image_size": "input size (default: the backbone's)",
    "n_per_class": "use only this many training images per class (data-scarce setting)",
    "checkpoint": "local weights file for the backbone (offline use)",
    "save_state": "also write the trained weights (safetensors) to this path",
    "out": "result JSON path (default: results/runs/<dataset>/<backbone>/<method>/r<ratio>/s<seed>.json)",
    "device": "auto, cpu, cuda, cuda:N",
}


def parse_args(argv: Sequence[str] | None = None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m benchmark.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _parse_ratio if f.name == "ratio" else _PARSERS[str(f.type)]
        if f.name in ("force", "progress"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help="rerun even if finished" if f.name == "force" else "show progress bars")
        elif f.default is dataclasses.MISSING:
            parser.add_argument(flag, required=True, type=kind, help=HELP.get(f.name))
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=f"{HELP.get(f.name, '')} (default: {f.default})".strip())
    return RunConfig(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> None:
    result = run(parse_args(argv))
    summary = result.get("metrics", {}).get("test", {})
    print(json.dumps({"status": result["status"], "error": result["error"], "test_macro_f1": summary.get("macro_f1"),
                      "achieved_ratio": result.get("budget", {}).get("achieved_ratio")}))


if __name__ == "__main__":
    main()
