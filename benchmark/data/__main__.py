"""Command line of the datasets: list them, prepare (fetch or read + verify + decode) one, show a
prepared one, write synthetic data.

    python -m benchmark.data list
    python -m benchmark.data prepare covid_ct --root data --size 224
    python -m benchmark.data prepare busi --from ~/Downloads/Dataset_BUSI_with_GT --root data
    python -m benchmark.data show busi --root data --size 224 --json
    python -m benchmark.data statuses covid_ct chaoyang --out results/datasets.yaml
    python -m benchmark.data synth folder data/mydata/raw --classes 3 --size 64

A problem with the data (missing, refused, degenerate, unreadable) prints one ``error: ...``
line and exits with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from benchmark.cli import (
    ArgumentParser, add_debug, existing_path, file_path, folder_path, guarded, int_at_least, non_negative_int,
    positive_int,
)

from . import DataError, describe, get, meta, names, prepare
from .download import ACCEPT_FLAG, MIRROR_ENV
from .synthetic import WRITERS, SynthConfig

USER_ERRORS = (DataError, KeyError, OSError)  # the user can fix these: no traceback


def _list(args: argparse.Namespace) -> None:
    header = ("name", "status", "modality", "classes", "source")
    rows = [header] + [(s.name, s.status, s.modality, str(s.num_classes or "?"), s.source) for s in map(get, names())]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)), row[4], sep="  ")
    print("\nplus folder:<path> for any image folder (class sub-folders, optional splits/*.txt)")


def _prepare(args: argparse.Namespace) -> None:
    path = prepare(args.name, args.root, args.size, source=args.source, mirror=args.mirror,
                   accept_checksum_mismatch=args.accept_checksum_mismatch)
    info = meta(args.name, args.root, args.size)
    print(f"{path}\nclasses: {json.dumps(info['class_names'])}\nsplits: {info['splits']['policy']}\n"
          f"checksum: {info['checksum']['status']}")
    for split, counts in info["counts"].items():
        print(f"  {split:<5} {counts['total']:>7} images, per class {counts['per_class']}")


def _show(args: argparse.Namespace) -> None:
    info = describe(args.name, args.root, args.size)
    if args.json:
        print(json.dumps(info, indent=1))
        return
    classes = info["classes"]
    width = max(len(c) for c in [*classes, "total"])
    print(f"{info['name']} at {info['size']} px ({info['cache']}); split: {info['split']}; "
          f"checksum: {info['checksum']}")
    print(" " * 6 + "".join(f"{c:>{width + 2}}" for c in [*classes, "total"]))
    for split, counts in [*info["counts"].items(), ("all", info["all"])]:
        print(f"{split:<6}" + "".join(f"{counts[c]:>{width + 2}}" for c in [*classes, "total"]))


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


def _cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="a registered name (see `list`) or folder:<path>")
    p.add_argument("--root", type=folder_path, default="data",
                   help="data root: raw files in ROOT/NAME/raw, cache in ROOT/NAME/SIZE")
    p.add_argument("--size", type=positive_int, default=224, help="square image size of the cache (default 224)")


def parser() -> argparse.ArgumentParser:
    common = ArgumentParser(add_help=False)
    add_debug(common)
    top = ArgumentParser(prog="python -m benchmark.data", description=__doc__, parents=[common],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="table of registered datasets with their status for the paper") \
        .set_defaults(run=_list)

    p = sub.add_parser("prepare", parents=[common], help="fetch or read, verify and decode a dataset once")
    _cache_options(p)
    p.add_argument("--from", dest="source", metavar="PATH", type=existing_path,
                   help="your copy of the dataset: the official archive or the extracted folder in the authors' "
                        "layout (read in place, never modified)")
    p.add_argument("--mirror", metavar="DIR_OR_URL",
                   help=f"look for downloads here, by their official file name (default: ${MIRROR_ENV})")
    p.add_argument(ACCEPT_FLAG, action="store_true",
                   help="use files that fail the dataset's check (a MedMNIST .npz whose md5 is not the official "
                        "one, image counts that differ from the published ones); meta.json records them as "
                        "user-supplied, with their md5s")
    p.set_defaults(run=_prepare)

    w = sub.add_parser("show", parents=[common], help="classes and per-split, per-class counts of a prepared dataset")
    _cache_options(w)
    w.add_argument("--json", action="store_true", help="print JSON")
    w.set_defaults(run=_show)

    t = sub.add_parser("statuses", parents=[common],
                       help="YAML of each dataset's status for the paper (confirmed, likely, stand-in, ...)")
    t.add_argument("names", nargs="+", help="registered dataset names")
    t.add_argument("--out", type=file_path, help="write the YAML here instead of printing it")
    t.set_defaults(run=_statuses)

    s = sub.add_parser("synth", parents=[common], help="write a small synthetic dataset in a real on-disk format")
    s.add_argument("format", choices=sorted(WRITERS),
                   help="medmnist: a .npz; folder: class folders; covid-ct: the COVID-CT layout")
    s.add_argument("out", type=folder_path,
                   help="output folder (for medmnist, the folder that receives synthetic-medmnist_<size>.npz)")
    d = SynthConfig()
    s.add_argument("--classes", type=int_at_least(2), default=d.num_classes,
                   help="number of classes (covid-ct: always 2)")
    s.add_argument("--n-train", type=positive_int, default=d.n_train, help="training images")
    s.add_argument("--n-val", type=positive_int, default=d.n_val, help="validation images")
    s.add_argument("--n-test", type=positive_int, default=d.n_test, help="test images")
    s.add_argument("--size", type=positive_int, default=d.size, help="image size in pixels")
    s.add_argument("--channels", type=int, choices=(1, 3), default=d.channels, help="1 = grayscale")
    s.add_argument("--seed", type=non_negative_int, default=d.seed, help="generator seed")
    s.set_defaults(run=_synth)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    guarded(lambda: args.run(args), USER_ERRORS, debug=args.debug)


if __name__ == "__main__":
    main()
