"""Command line of ``python -m benchmark.perf``."""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import benchmark.perf

from .measure import CLOCKS, DEFAULT_RATIOS, REFERENCES, PerfConfig, run
from .report import header, markdown_table, output_stem, write_outputs

PROG = "python -m benchmark.perf"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=benchmark.perf.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=PerfConfig.backbone,
                   help="backbone name (tiny_vit, clip_vit_b16, timm:<name>, ...; as python -m benchmark.run)")
    p.add_argument("--methods", help="comma-separated registered methods (default: all); "
                                     f"{', '.join(REFERENCES)} are always added")
    p.add_argument("--batch-size", type=int, default=PerfConfig.batch_size)
    p.add_argument("--image-size", type=int, help="input size (default: the backbone's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16 = bfloat16 autocast")
    p.add_argument("--ratio", type=float, nargs="+", default=list(DEFAULT_RATIOS), dest="ratios",
                   help="trainable ratios of the sparse methods, one row each (default: %(default)s)")
    p.add_argument("--matched", action="store_true", help="run knob methods (adapters, VPT, ...) at every --ratio too")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--warmup", type=int, default=PerfConfig.warmup, help="warm-up steps (the first also fills the optimizer state)")
    p.add_argument("--steps", type=int, default=PerfConfig.steps, help="measured steps (median reported)")
    p.add_argument("--repeats", type=int, default=PerfConfig.repeats,
                   help="rounds of --steps (interleaved), or measurements of every method, round-robin "
                        "(--no-interleave: steps pooled, median peak)")
    p.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=PerfConfig.interleave,
                   help="time every method's steps round-robin, one step each in turn, in one process "
                        "(steadier ratios on a shared machine; not with --compile); peak memory still from one process per method")
    p.add_argument("--clock", choices=sorted(CLOCKS), default=PerfConfig.clock,
                   help="CPU timing: wall-clock, or cpu = the process's CPU time, steadier on a loaded "
                        "machine with --threads 1 (default: %(default)s; CUDA always uses CUDA events)")
    p.add_argument("--importance-batches", type=int, default=PerfConfig.importance_batches,
                   help="batches of the timed importance pass (0: skip)")
    p.add_argument("--seed", type=int, default=PerfConfig.seed)
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's; 1 is steadier on a shared machine)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction,
                   help="one process per method (default: on CPU; on CUDA peak stats are reset instead)")
    p.add_argument("--out-dir", type=Path, default=Path("results/perf"))
    args = p.parse_args(argv)
    if min(args.warmup, args.steps, args.repeats) < 1:
        p.error("--warmup, --steps and --repeats must be >= 1")
    if not all(0 < r <= 1 for r in args.ratios):
        p.error("--ratio values must be in (0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    cfg = PerfConfig(
        backbone=args.backbone, batch_size=args.batch_size, image_size=args.image_size, device=args.device,
        dtype=args.dtype, ratios=tuple(args.ratios), matched=args.matched, compile=args.compile,
        warmup=args.warmup, steps=args.steps, repeats=args.repeats, interleave=args.interleave, clock=args.clock,
        importance_batches=args.importance_batches,
        seed=args.seed, threads=args.threads,
    )
    methods = args.methods.split(",") if args.methods else None
    rows = run(cfg, methods, args.isolate)
    command = shlex.join([*PROG.split(), *(sys.argv[1:] if argv is None else argv)])
    meta = header(cfg, command)
    csv_path, md_path = write_outputs(rows, meta, args.out_dir, output_stem(cfg))
    print(f"{meta['device']}, torch {meta['torch']}, {cfg.backbone} {cfg.size}px batch {cfg.batch_size} {cfg.dtype}"
          f"{' compiled' if cfg.compile else ''}\n")
    print(markdown_table(rows))
    print(f"\nwrote {csv_path} and {md_path}")
    return rows
