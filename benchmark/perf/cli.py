"""Command line of ``python -m benchmark.perf``."""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import torch

import baselines
import benchmark.perf
from benchmark.cli import (
    ArgumentParser, UsageError, add_debug, folder_path, guarded, non_negative_int, positive_int, ratio,
)
from benchmark.config import check_backbone, check_device

from .measure import CLOCKS, DEFAULT_RATIOS, REFERENCES, PerfConfig, run
from .report import header, markdown_table, output_stem, write_outputs

PROG = "python -m benchmark.perf"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, each value checked by its type (one ``error:`` line for a bad one)."""
    p = ArgumentParser(prog=PROG, description=benchmark.perf.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=PerfConfig.backbone,
                   help="backbone name (tiny_vit, clip_vit_b16, timm:<name>, ...; as python -m benchmark.run)")
    p.add_argument("--methods", help="comma-separated registered methods (default: all); "
                                     f"{', '.join(REFERENCES)} are always added")
    p.add_argument("--batch-size", type=positive_int, default=PerfConfig.batch_size)
    p.add_argument("--image-size", type=positive_int, help="input size (default: the backbone's)")
    p.add_argument("--device", default="auto", help="auto (CUDA if there is one), cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16 = bfloat16 autocast")
    p.add_argument("--ratio", type=ratio, nargs="+", default=list(DEFAULT_RATIOS), dest="ratios",
                   help="trainable ratios of the sparse methods, one row each (default: %(default)s)")
    p.add_argument("--matched", action="store_true", help="run knob methods (adapters, VPT, ...) at every --ratio too")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--warmup", type=positive_int, default=PerfConfig.warmup,
                   help="warm-up steps (the first also fills the optimizer state)")
    p.add_argument("--steps", type=positive_int, default=PerfConfig.steps, help="measured steps (median reported)")
    p.add_argument("--repeats", type=positive_int, default=PerfConfig.repeats,
                   help="rounds of --steps (interleaved), or measurements of every method, round-robin "
                        "(--no-interleave: steps pooled, median peak)")
    p.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=PerfConfig.interleave,
                   help="time every method's steps round-robin, one step each in turn, in one process "
                        "(steadier ratios on a shared machine; not with --compile); peak memory still from one process per method")
    p.add_argument("--clock", choices=sorted(CLOCKS), default=PerfConfig.clock,
                   help="CPU timing: wall-clock, or cpu = the process's CPU time, steadier on a loaded "
                        "machine with --threads 1 (default: %(default)s; CUDA always uses CUDA events)")
    p.add_argument("--importance-batches", type=non_negative_int, default=PerfConfig.importance_batches,
                   help="batches of the timed importance pass (0: skip)")
    p.add_argument("--seed", type=non_negative_int, default=PerfConfig.seed)
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads (default: torch's; 1 is steadier on a shared machine)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction,
                   help="one process per method (default: on CPU; on CUDA peak stats are reset instead)")
    p.add_argument("--out-dir", type=folder_path, default="results/perf")
    add_debug(p)
    return p.parse_args(argv)


def method_names(text: str | None) -> list[str] | None:
    """``--methods`` as a list (None: all), every name registered."""
    if not text:
        return None
    methods = text.split(",")
    unknown = [m for m in methods if m not in baselines.names()]
    if unknown:
        raise UsageError(f"--methods: got {', '.join(map(repr, unknown))}; expected comma-separated names of "
                         f"{', '.join(baselines.names())}")
    return methods


def checked_device(name: str) -> str:
    """``--device`` after :func:`benchmark.config.check_device`, ``auto`` resolved (CUDA if there is one)."""
    check_device(name)
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def config(args: argparse.Namespace) -> PerfConfig:
    """The measurement's configuration, every name and value checked first."""
    device = checked_device(args.device)
    check_backbone(args.backbone, args.image_size)  # a meta-device build: no weights, no memory
    return PerfConfig(
        backbone=args.backbone, batch_size=args.batch_size, image_size=args.image_size, device=device,
        dtype=args.dtype, ratios=tuple(args.ratios), matched=args.matched, compile=args.compile,
        warmup=args.warmup, steps=args.steps, repeats=args.repeats, interleave=args.interleave, clock=args.clock,
        importance_batches=args.importance_batches,
        seed=args.seed, threads=args.threads,
    )


def measure_and_report(args: argparse.Namespace, argv: Sequence[str] | None) -> list[dict[str, Any]]:
    """Check everything, then measure, print the table and write the CSV and Markdown."""
    methods = method_names(args.methods)
    cfg = config(args)
    rows = run(cfg, methods, args.isolate)
    command = shlex.join([*PROG.split(), *(sys.argv[1:] if argv is None else argv)])
    meta = header(cfg, command)
    csv_path, md_path = write_outputs(rows, meta, args.out_dir, output_stem(cfg))
    print(f"{meta['device']}, torch {meta['torch']}, {cfg.backbone} {cfg.size}px batch {cfg.batch_size} {cfg.dtype}"
          f"{' compiled' if cfg.compile else ''}\n")
    print(markdown_table(rows))
    print(f"\nwrote {csv_path} and {md_path}")
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    return guarded(lambda: measure_and_report(args, argv), debug=args.debug)
