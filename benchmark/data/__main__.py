"""Command line of the datasets: list them, prepare (fetch + verify + decode) one, write synthetic data.

    python -m benchmark.data list
    python -m benchmark.data statuses covid_ct chaoyang --out results/datasets.yaml
    python -m benchmark.data prepare covid_ct --root data --size 224
    python -m benchmark.data synth folder data/mydata/raw --classes 3 --size 64
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import DatasetUnavailableError, get, meta, names, prepare
from .synthetic import WRITERS, SynthConfig


def _list(args: argparse.Namespace) -> None:
    header = ("name", "status", "modality", "classes", "source")
    rows = [header] + [(s.name, s.status, s.modality, str(s.num_classes or "?"), s.source) for s in map(get, names())]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)), row[4], sep="  ")
    print("\nplus folder:<path> for any image folder (class sub-folders, optional splits/*.txt)")


def _prepare(args: argparse.Namespace) -> None:
    try:
        path = prepare(args.name, args.root, args.size)
    except (DatasetUnavailableError, KeyError) as err:
        sys.exit(f"error: {err.args[0]}")
    info = meta(args.name, args.root, args.size)
    print(f"{path}\nclasses: {', '.join(info['class_names'])}\nsplits: {info['splits']['policy']}")
    for split, counts in info["counts"].items():
        print(f"  {split:<5} {counts['total']:>7} images, per class {counts['per_class']}")


def _statuses(args: argparse.Namespace) -> None:
    text = "".join(f"{name}: {get(name).status}\n" for name in args.names)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        print(text, end="")


def _synth(args: argparse.Namespace) -> None:
    cfg = SynthConfig(num_classes=args.classes, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                      size=args.size, seed=args.seed, channels=args.channels)
    print(WRITERS[args.format](Path(args.out), cfg))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="table of registered datasets with their status for the paper").set_defaults(run=_list)

    p = sub.add_parser("prepare", help="fetch (or explain how to get), verify and decode a dataset once")
    p.add_argument("name", help="a registered name (see `list`) or folder:<path>")
    p.add_argument("--root", default="data", help="data root: raw files in ROOT/NAME/raw, cache in ROOT/NAME/SIZE")
    p.add_argument("--size", type=int, default=224, help="square image size of the cache (default 224)")
    p.set_defaults(run=_prepare)

    t = sub.add_parser("statuses", help="YAML of each dataset's status for the paper (confirmed, likely, stand-in, ...)")
    t.add_argument("names", nargs="+", help="registered dataset names")
    t.add_argument("--out", help="write the YAML here instead of printing it")
    t.set_defaults(run=_statuses)

    s = sub.add_parser("synth", help="write a small synthetic dataset in a real on-disk format")
    s.add_argument("format", choices=sorted(WRITERS),
                   help="medmnist: a .npz; folder: class folders; covid-ct: the COVID-CT layout")
    s.add_argument("out", help="output folder (for medmnist, the folder that receives synthetic-medmnist_<size>.npz)")
    d = SynthConfig()
    s.add_argument("--classes", type=int, default=d.num_classes, help="number of classes (covid-ct: always 2)")
    s.add_argument("--n-train", type=int, default=d.n_train, help="training images")
    s.add_argument("--n-val", type=int, default=d.n_val, help="validation images")
    s.add_argument("--n-test", type=int, default=d.n_test, help="test images")
    s.add_argument("--size", type=int, default=d.size, help="image size in pixels")
    s.add_argument("--channels", type=int, choices=(1, 3), default=d.channels, help="1 = grayscale")
    s.add_argument("--seed", type=int, default=d.seed, help="generator seed")
    s.set_defaults(run=_synth)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
