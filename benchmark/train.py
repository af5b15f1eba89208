"""The training and evaluation loop shared by every method: batches from preloaded uint8
tensors, augmentation and normalisation on the device, one optimisation step (:class:`TrainStep`:
AdamW in parameter groups, the head at its own lr and no weight decay on the tensors the method
names, cosine schedule with warm-up, drop-path, autocast on CUDA, gradient clipping), model
selection on validation macro-F1. ``benchmark.perf`` times the same :class:`TrainStep`."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
)
from timm.layers import DropPath
from torch import Tensor, nn
from tqdm.auto import tqdm

from benchmark.config import TrainSettings
from shpeft import HEAD, in_modules


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss; the run is recorded as failed."""


class DeviceBatches:
    """Mini-batches of a uint8 image tensor, normalised (and augmented) on ``device``."""

    def __init__(
        self, images: Tensor, labels: Tensor, *, batch_size: int, device: torch.device,
        mean: tuple[float, ...], std: tuple[float, ...], image_size: int,
        shuffle: bool = False, augment: bool = False, seed: int = 0,
    ):
        if len(images) == 0:
            raise ValueError("cannot build batches from an empty split")
        self.images, self.labels = images, labels
        self.batch_size, self.device, self.image_size = batch_size, device, image_size
        self.shuffle, self.augment = shuffle, augment
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx].to(self.device, non_blocking=True).float().div_(255)
            if self.augment:
                x = random_resized_crop_flip(x, self.generator)
            if x.shape[-1] != self.image_size:
                x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
            yield (x - self.mean) / self.std, self.labels[idx].to(self.device, non_blocking=True)


def random_resized_crop_flip(
    x: Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0)
) -> Tensor:
    """Batched light augmentation on the device: a random crop of 50-100% of the area at a
    random position (aspect ratio 3/4..4/3), resized back, and a horizontal flip (p=0.5)."""
    n = x.shape[0]
    rand = torch.rand(n, 4, generator=generator).to(x.device)
    area = scale[0] + (scale[1] - scale[0]) * rand[:, 0]
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * rand[:, 1]
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1)
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1)
    tx = (1 - sx) * (2 * rand[:, 2] - 1)
    ty = (1 - sy) * (2 * rand[:, 3] - 1)
    flip = torch.where(torch.rand(n, generator=generator).to(x.device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def classification_metrics(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> dict:
    """Macro-F1 (the paper's headline), accuracy, balanced accuracy, macro AUC, per-class F1."""
    pred = probs.argmax(1)
    classes = list(range(num_classes))
    metrics = {
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=classes, zero_division=0)),
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "per_class_f1": [float(v) for v in f1_score(labels, pred, average=None, labels=classes, zero_division=0)],
    }
    try:
        scores = probs[:, 1] if num_classes == 2 else probs
        metrics["macro_auc"] = float(roc_auc_score(labels, scores, multi_class="ovr", average="macro", labels=classes))
    except ValueError:  # a class absent from this split: AUC undefined
        metrics["macro_auc"] = float("nan")
    return metrics


def autocast(device: torch.device, enabled: bool | None = None) -> torch.autocast:
    """bfloat16 autocast: on CUDA unless ``enabled`` says otherwise (the perf script's ``--dtype``)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" if enabled is None else enabled)


@torch.no_grad()
def evaluate(model: nn.Module, batches: DeviceBatches, num_classes: int) -> dict:
    model.eval()
    probs, labels = [], []
    for x, y in batches:
        with autocast(batches.device):
            probs.append(model(x).float().softmax(-1).cpu())
        labels.append(y.cpu())
    return classification_metrics(torch.cat(labels).numpy(), torch.cat(probs).numpy(), num_classes)


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up to the base lr, then cosine decay to zero (per step)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def param_groups(
    model: nn.Module, *, lr: float, head_lr: float, weight_decay: float, no_decay: Collection[str],
    head: Sequence[str] = HEAD,
) -> list[dict]:
    """AdamW groups of the trainable parameters: (method | head) x (decayed | not decayed).

    Each group carries ``names`` (its parameter names) for inspection; empty groups are left out.
    """
    groups: dict[tuple[bool, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head, decays = in_modules(name, head), name not in no_decay
        group = groups.setdefault((is_head, decays), {
            "params": [], "names": [], "lr": head_lr if is_head else lr,
            "weight_decay": weight_decay if decays else 0.0,
        })
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())


def set_drop_path(model: nn.Module, rate: float) -> nn.Module:
    """Stochastic depth on every timm ``Block`` of ``model`` (found by its ``drop_path1/2``), the
    rate rising linearly from 0 at the first block to ``rate`` at the last, as timm's
    ``drop_path_rate``. Active in train mode only; rate 0 leaves the model unchanged."""
    blocks = [m for m in model.modules() if hasattr(m, "drop_path1") and hasattr(m, "drop_path2")]
    if rate == 0 or not blocks:
        return model
    for block, r in zip(blocks, torch.linspace(0, rate, len(blocks)).tolist()):
        block.drop_path1 = DropPath(r) if r > 0 else nn.Identity()
        block.drop_path2 = DropPath(r) if r > 0 else nn.Identity()
    return model


class TrainStep:
    """One optimisation step exactly as :func:`fit` runs it: forward under autocast, cross-entropy, a
    NaN/Inf check, backward, gradient clipping, AdamW over :func:`param_groups`, one scheduler step.

    Built once per model: sets drop-path, makes the optimizer and the cosine schedule over
    ``settings.epochs`` x ``steps_per_epoch`` steps, and compiles the model if asked."""

    def __init__(self, model: nn.Module, settings: TrainSettings, steps_per_epoch: int, *,
                 no_decay: Collection[str] = frozenset(), device: torch.device, autocast_on: bool | None = None):
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        set_drop_path(model, settings.drop_path)
        groups = param_groups(model, lr=settings.lr, head_lr=settings.head_lr, weight_decay=settings.weight_decay,
                              no_decay=no_decay)
        self.optimizer = torch.optim.AdamW(groups, fused=device.type == "cuda")
        self.scheduler = cosine_with_warmup(self.optimizer, round(settings.warmup_epochs * steps_per_epoch),
                                            settings.epochs * steps_per_epoch)
        self.forward = torch.compile(model) if settings.compile else model
        self.grad_clip, self.device, self.autocast_on = settings.grad_clip, device, autocast_on
        self.steps_per_epoch, self.steps = steps_per_epoch, 0

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Train on one batch; returns the (detached) loss."""
        with autocast(self.device, self.autocast_on):
            loss = F.cross_entropy(self.forward(x).float(), y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss became {loss.item()} at epoch {self.steps // self.steps_per_epoch + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.steps += 1
        return loss.detach()


def _trainable_state(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def epoch_line(record: dict, epochs: int, best: bool) -> str:
    """``epoch 3/6: train loss 0.512, val macro-F1 0.634 (best so far)``."""
    return (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.3f}, "
            f"val macro-F1 {record['val_macro_f1']:.3f}{' (best so far)' if best else ''}")


def fit(
    model: nn.Module, train: DeviceBatches, val: DeviceBatches, settings: TrainSettings, num_classes: int,
    no_decay: Collection[str] = frozenset(), log: Callable[[str], None] | None = None,
) -> dict:
    """Train ``model`` (its requires_grad parameters only; weight decay on all but ``no_decay``);
    restore the epoch with the best validation macro-F1. Returns the history (train loss, val
    macro-F1 per epoch), best epoch, throughput and the seconds spent on validation; ``log`` receives one
    line per epoch."""
    device = train.device
    step = TrainStep(model, settings, len(train), no_decay=no_decay, device=device)
    best, best_f1, best_epoch, history = _trainable_state(model), -1.0, -1, []
    train_images, train_time, val_time = 0, 0.0, 0.0
    for epoch in range(settings.epochs):
        model.train()
        start = time.perf_counter()
        bar = tqdm(train, desc=f"epoch {epoch + 1}/{settings.epochs}", leave=False, disable=not settings.progress)
        losses = []
        for x, y in bar:
            losses.append(step(x, y).item())
            train_images += len(y)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        trained = time.perf_counter()
        train_time += trained - start
        val_metrics = evaluate(model, val, num_classes)
        val_time += time.perf_counter() - trained
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_macro_f1": val_metrics["macro_f1"]})
        improved = val_metrics["macro_f1"] > best_f1
        if improved:
            best, best_f1, best_epoch = _trainable_state(model), val_metrics["macro_f1"], epoch + 1
        if log:
            log(epoch_line(history[-1], settings.epochs, improved))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in best:
                p.copy_(best[name])
    return {"history": history, "best_epoch": best_epoch, "train_img_per_s": train_images / max(train_time, 1e-9),
            "val_s": val_time}
