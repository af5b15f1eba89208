"""One benchmark cell: (dataset, backbone, method, ratio, seed) -> one result JSON.

    python -m benchmark.run --dataset synthetic-medmnist --backbone tiny_vit --method shpeft --ratio 1e-2
    python -m benchmark.run --rerun results/runs/.../s0.json --out /tmp/again.json   # same config, compare metrics

Every setting is checked before any data or model work (a bad one: ``error: ...``, exit 2). The JSON
(schema in docs/architecture.md) carries the metrics, the trainable budget that was met, the effective
hyper-parameters, the calibration sample, throughput, peak memory and provenance. It is written
atomically; a finished run with the same config is skipped unless ``--force``. A NaN loss is recorded
as a failed run (exit code 0, so a DAG goes on).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

import baselines
import shpeft
from benchmark import data
from benchmark.backbones import BackboneUnavailableError, CheckpointError, create_backbone, data_config
from benchmark.config import ConfigError, RunConfig, add_arguments, from_flat, given, result_path, validate
from benchmark.data.splits import stratified_indices
from benchmark.provenance import provenance
from benchmark.train import DeviceBatches, NonFiniteLossError, TrainConfig, evaluate, fit

SCHEMA = 1
FINISHED = ("ok", "unreachable")
USER_ERRORS = (ConfigError, data.DataError, BackboneUnavailableError, CheckpointError)


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


# --- builders shared by the runner and the sparsity measurement -----------------------------------------

def data_size(cfg: RunConfig) -> int:
    """The cache resolution a run reads (its image size, or 224 when the backbone decides)."""
    return cfg.image_size or 224


def load_splits(cfg: RunConfig) -> tuple[dict[str, data.TensorSplit], dict]:
    """The dataset's train/val/test tensors (prepared on first use) and its meta.json; the
    training split is reduced to ``n_per_class`` per class when asked."""
    splits = data.load(cfg.dataset, root=cfg.data_root, size=data_size(cfg))
    info = data.meta(cfg.dataset, cfg.data_root, data_size(cfg))
    if cfg.n_per_class:
        splits["train"] = data.subset(splits["train"], n_per_class=cfg.n_per_class, seed=cfg.seed)
    return splits, info


MAX_LISTED_FILES = 8  # a result lists the md5 of each data file up to this many, else one digest of them all


def data_provenance(info: dict) -> dict:
    """What a result records of its dataset (from meta.json): where it came from, its checksum
    status (official / user-supplied / unpublished) with the md5s of the files read (one digest of
    them for many-file datasets), the fingerprint of the inputs, and the split policy."""
    checksum = dict(info.get(data.CHECKSUM_KEY) or {})
    files = checksum.pop("files", None) or {}
    checksum["n_files"] = len(files)
    if len(files) <= MAX_LISTED_FILES:
        checksum["files"] = files
    else:
        checksum["files_md5"] = hashlib.md5(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {
        "name": info.get("name"), "from": info.get("from"), "source": info.get("source"),
        data.CHECKSUM_KEY: checksum, "fingerprint": (info.get("fingerprint") or {}).get("digest"),
        "splits": info.get("splits"),
    }


def build_model(cfg: RunConfig, num_classes: int, device: torch.device) -> torch.nn.Module:
    """The backbone with a fresh ``num_classes`` head, as every run builds it."""
    return create_backbone(cfg.backbone, num_classes, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint,
                           image_size=cfg.image_size).to(device)


def make_batches(cfg: RunConfig, split: data.TensorSplit, model: torch.nn.Module, device: torch.device, *,
                 train: bool = False, seed: int = 0) -> DeviceBatches:
    """Batches of ``split`` normalised for ``model`` (augmented and shuffled when ``train``)."""
    dcfg = data_config(model)
    return DeviceBatches(
        split.images, split.labels, batch_size=cfg.train.batch_size, device=device, mean=dcfg["mean"],
        std=dcfg["std"], image_size=cfg.image_size or dcfg["input_size"][-1], shuffle=train,
        augment=train and cfg.train.augment, seed=seed,
    )


def calibration_sample(labels: torch.Tensor, n: int, seed: int) -> np.ndarray:
    """A seeded, class-stratified sample of about ``n`` training indices (every class present), in
    shuffled order: the importance pass must not see one class only on a split sorted by class."""
    labels_np = labels.numpy()
    if n >= len(labels_np):
        chosen = np.arange(len(labels_np))
    else:
        chosen = stratified_indices(labels_np, {"calib": n, "rest": len(labels_np) - n}, seed)["calib"]
    return chosen[np.random.default_rng(seed).permutation(len(chosen))]


def effective_train_config(cfg: RunConfig, method: baselines.PeftMethod) -> TrainConfig:
    """The training settings with every ``None`` resolved from the method's reference recipe.

    The learning rates are the recipe's x ``lr_scale``; an explicit ``lr`` moves the head's lr with it
    (the recipe's head/method ratio kept) unless ``head_lr`` is given too, so an lr sweep also tunes
    the head, which is all a linear probe trains."""
    recipe, train = method.recipe, cfg.train
    scale = train.lr_scale if train.lr is None else train.lr / recipe.lr
    return dataclasses.replace(
        train,
        lr=recipe.lr * scale,
        head_lr=recipe.head_lr * scale if train.head_lr is None else train.head_lr,
        weight_decay=recipe.weight_decay if train.weight_decay is None else train.weight_decay,
        drop_path=recipe.drop_path if train.drop_path is None else train.drop_path,
    )


def save_trained_state(model: torch.nn.Module, path: Path, backbone_params: int) -> None:
    """The trained weights: an shpeft adapter for sparse methods, else every trainable tensor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if shpeft.delta_sites(model):
        shpeft.save_adapter(model, path, backbone_params=backbone_params)
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
    """Validate, run one cell and write its result JSON; return the result."""
    validate(cfg)
    path = result_path(cfg)
    if not cfg.force and (old := _finished(path, cfg)):
        print(f"skip: {path} is finished with the same config (use --force to rerun)")
        return old
    method = baselines.get(cfg.method)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    started = time.perf_counter()
    train_cfg = effective_train_config(cfg, method)
    result: dict[str, Any] = {
        "schema": SCHEMA, "status": None, "error": None,
        "config": {**cfg.flat(), "identity": cfg.identity()},
        "hparams": {k: v for k, v in dataclasses.asdict(train_cfg).items() if k != "progress"},
        "recipe": method.recipe.asdict(),
        "provenance": provenance(device),
    }
    splits, info = load_splits(cfg)
    num_classes = info["num_classes"]
    result["provenance"]["data"] = data_provenance(info)
    model = build_model(cfg, num_classes, device)
    calib_index = calibration_sample(splits["train"].labels, cfg.calib_images, cfg.seed)
    calib_split = data.TensorSplit(splits["train"].images[calib_index], splits["train"].labels[calib_index])
    result["calibration"] = {
        "images": len(calib_index), "seed": cfg.seed,
        "class_counts": np.bincount(calib_split.labels.numpy(), minlength=num_classes).tolist(),
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        prepare_start = time.perf_counter()
        prepared = baselines.prepare(method, model, cfg.ratio, list(make_batches(cfg, calib_split, model, device)))
        prepare_s = time.perf_counter() - prepare_start
        result["budget"] = prepared.budget()
        result["hparams"].update(prepared.hparams)
        if not prepared.reachable:
            result.update(status="unreachable", error=prepared.note)
            write_json_atomic(result, path)
            return result
        train = make_batches(cfg, splits["train"], model, device, train=True, seed=cfg.seed)
        fitted = fit(prepared.model, train, make_batches(cfg, splits["val"], model, device), train_cfg, num_classes,
                     no_decay=prepared.no_decay)
    except (NonFiniteLossError, shpeft.NonFiniteError) as err:  # recorded, so a DAG goes on
        result.update(status="failed", error=f"{type(err).__name__}: {err}",
                      perf={"wall_s": time.perf_counter() - started, **peak_memory(device)})
        write_json_atomic(result, path)
        return result
    result["metrics"] = {
        "test": evaluate(prepared.model, make_batches(cfg, splits["test"], model, device), num_classes),
        "val": evaluate(prepared.model, make_batches(cfg, splits["val"], model, device), num_classes),
        "best_epoch": fitted["best_epoch"],
        "history": fitted["history"],
    }
    result["perf"] = {
        "wall_s": time.perf_counter() - started, "prepare_s": prepare_s,
        "train_img_per_s": fitted["train_img_per_s"], **peak_memory(device),
    }
    if cfg.save_state:
        save_trained_state(prepared.model, Path(cfg.save_state), prepared.backbone_params)
    result["status"] = "ok"
    write_json_atomic(result, path)
    return result


# --- re-running a recorded cell ---------------------------------------------------------------------------

def recorded_config(result_file: str | Path, overrides: dict[str, Any]) -> RunConfig:
    """The config recorded in a result JSON, with ``overrides`` (data root, checkpoint, out, ...)."""
    try:
        recorded = json.loads(Path(result_file).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--rerun: {result_file} is not a readable result JSON ({err})") from None
    settings = {k: v for k, v in recorded.items() if k != "identity"}
    return from_flat({**settings, "out": None, **overrides, "force": True})


def metric_differences(old: dict, new: dict) -> list[tuple[str, float, float, float]]:
    """(metric, recorded, rerun, rerun - recorded) for every scalar test/val metric of both results."""
    rows = []
    for split in ("test", "val"):
        a, b = old.get("metrics", {}).get(split, {}), new.get("metrics", {}).get(split, {})
        for name in sorted(set(a) & set(b)):
            if isinstance(a[name], (int, float)) and isinstance(b[name], (int, float)):
                rows.append((f"{split}.{name}", a[name], b[name], b[name] - a[name]))
    return rows


# --- command line -------------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rerun", metavar="RESULT.json", help="run the config recorded in RESULT.json again "
                   "(other options override it: --out, --data-root, --checkpoint, --device) and print the metric differences")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    add_arguments(p, required=False)
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[RunConfig, argparse.Namespace]:
    args = parser().parse_args(argv)
    settings = given(args)
    if args.rerun:
        return recorded_config(args.rerun, settings), args
    missing = [f"--{k}" for k in ("dataset", "method") if k not in settings]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required (or --rerun RESULT.json)")
    return from_flat(settings), args


def main(argv: Sequence[str] | None = None) -> None:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        cfg, args = parse_args(argv)
        result = run(cfg)
    except USER_ERRORS as err:
        if debug:
            raise
        sys.exit(print(f"error: {err}", file=sys.stderr) or 2)
    if args.rerun:
        old = json.loads(Path(args.rerun).read_text())
        for name, a, b, diff in metric_differences(old, result):
            print(f"{name:<28} recorded {a:.4f}  rerun {b:.4f}  difference {diff:+.4f}")
    summary = result.get("metrics", {}).get("test", {})
    print(json.dumps({"status": result["status"], "error": result["error"], "test_macro_f1": summary.get("macro_f1"),
                      "achieved_ratio": result.get("budget", {}).get("achieved_ratio")}))


if __name__ == "__main__":
    main()
