"""What one cell is made of: its data (splits, calibration sample, provenance), its model (the
backbone with a fresh head) and its batches, built the same way for the runner, the sparsity
measurement and the prompt diagnosis, so each rebuilds exactly what a run saw."""
from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import torch

from benchmark import data
from benchmark.backbones import create_backbone, data_config
from benchmark.config import RunConfig
from benchmark.data.splits import stratified_indices
from benchmark.train import DeviceBatches

MAX_LISTED_FILES = 8  # a result lists the md5 of each data file up to this many, else one digest of them all


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def calibration_split(cfg: RunConfig, train: data.TensorSplit, num_classes: int) -> tuple[data.TensorSplit, dict]:
    """The calibration sample of the training split, and what a result records of it."""
    index = calibration_sample(train.labels, cfg.calib_images, cfg.seed)
    split = data.TensorSplit(train.images[index], train.labels[index])
    record = {"images": len(index), "seed": cfg.seed,
              "class_counts": np.bincount(split.labels.numpy(), minlength=num_classes).tolist()}
    return split, record
