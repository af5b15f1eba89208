"""What untrained VPT prompts do to a frozen backbone's features, before any training.

    python -m benchmark.prompt_spread --dataset busi --backbone timm:deit_tiny_patch16_224 --image-size 96 \\
        --checkpoint deit_tiny_patch16_224.safetensors --prompts 0 2 8 24

For each prompt length (0 = the plain backbone) it builds the backbone with VPT's randomly initialised
prompts (``baselines.vpt.PromptedViT``, deep unless ``--shallow``) and reports, on the training split:
the between-image standard deviation of the pre-logit features (mean over features), and the validation
macro-F1 of a logistic-regression probe on the standardised features. A spread that collapses while the
probe score holds means the prompts take over the attention of every block: the image signal is still
there but the fresh head sees it many times smaller, so it first learns the class prior and needs more
steps (the CPU study's VPT-deep diagnosis, docs/replication.md).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from baselines.vpt import PromptedViT
from benchmark.cli import (ArgumentParser, add_debug, existing_file, folder_path, guarded, non_negative_int,
                           positive_int, wants_debug)
from benchmark.config import HELP, RunConfig, from_flat, parse_bool, validate_values
from benchmark.cell import build_model, load_splits, make_batches, seed_everything


@torch.no_grad()
def features(model: nn.Module, batches) -> np.ndarray:
    """Pre-logit features of every image of ``batches`` (the model's head is an ``Identity``)."""
    model.eval()
    return torch.cat([model(x).float() for x, _ in batches]).numpy()


def probe_f1(train: np.ndarray, train_labels: np.ndarray, val: np.ndarray, val_labels: np.ndarray) -> float:
    """Validation macro-F1 of a logistic regression on standardised features."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(train, train_labels)
    return float(f1_score(val_labels, probe.predict(val), average="macro"))


def prompt_spread(cfg: RunConfig, lengths: Sequence[int], deep: bool = True) -> list[dict]:
    """One row per prompt length: ``prompts``, ``feature_std`` (between images, train split) and ``probe_f1``."""
    splits, info = load_splits(cfg)
    device = torch.device("cpu")
    rows = []
    for length in lengths:
        seed_everything(cfg.seed)
        model = build_model(cfg, info["num_classes"], device)
        if length:
            model = PromptedViT(model, length, deep=deep, dropout=0.0)
        model.head = nn.Identity()
        train = features(model, make_batches(cfg, splits["train"], model, device))
        val = features(model, make_batches(cfg, splits["val"], model, device))
        rows.append({"prompts": length, "feature_std": float(train.std(axis=0).mean()),
                     "probe_f1": probe_f1(train, splits["train"].labels.numpy(), val, splits["val"].labels.numpy())})
    return rows


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m benchmark.prompt_spread", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    add_debug(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--backbone", default="timm:deit_tiny_patch16_224")
    p.add_argument("--image-size", type=positive_int, default=None)
    p.add_argument("--checkpoint", type=existing_file, default=None, help=HELP["checkpoint"])
    p.add_argument("--pretrained", type=parse_bool, default=True)
    p.add_argument("--data-root", type=folder_path, default="data")
    p.add_argument("--prompts", type=non_negative_int, nargs="+", default=[0, 2, 8, 24], help="prompt lengths (0: no prompts)")
    p.add_argument("--shallow", action="store_true", help="VPT-shallow (one set at the input) instead of deep")
    p.add_argument("--seed", type=non_negative_int, default=0)
    return p


def _main(argv: Sequence[str] | None) -> None:
    args = parser().parse_args(argv)
    cfg = from_flat({"dataset": args.dataset, "method": "vpt-shallow" if args.shallow else "vpt-deep",
                     "backbone": args.backbone, "image_size": args.image_size,
                     "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
                     "pretrained": args.pretrained, "data_root": str(args.data_root), "seed": args.seed})
    validate_values(cfg)
    print("prompts  feature_std  probe_val_macro_f1")
    for row in prompt_spread(cfg, args.prompts, deep=not args.shallow):
        print(f"{row['prompts']:7d}  {row['feature_std']:11.3f}  {row['probe_f1']:18.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    guarded(lambda: _main(argv), debug=wants_debug(argv))


if __name__ == "__main__":
    main()
