"""``python -m shpeft inspect ADAPTER``: what a saved adapter trains, per layer and in total."""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import NoReturn

from .io import AdapterMismatchError, read_adapter

EXIT_BAD_INPUT = 2  # argparse's code for a usage error; a bad adapter file is one too
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error as one ``error:`` line, as every benchmark command (shpeft stands
    alone: it imports nothing from the benchmark). Sub-parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def inspect_adapter(path: str) -> dict:
    """Per-weight k, totals and the achieved ratio (None for files that did not record the backbone)."""
    adapter = read_adapter(path)
    per_weight = {n: int(i.numel()) for n, i in adapter.indices.items()}
    backbone = adapter.backbone_params
    return {
        "k": adapter.k,
        "per_weight": per_weight,
        "extra_params": sum(v.numel() for v in adapter.extras.values()),
        "backbone_params": backbone,
        "ratio": adapter.k / backbone if backbone else None,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = _Parser(prog="python -m shpeft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="report k per weight and the achieved trainable ratio")
    inspect.add_argument("adapter", help="an adapter file written by shpeft.save_adapter")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    try:
        info = inspect_adapter(args.adapter)
    except (AdapterMismatchError, OSError) as err:
        if args.debug:
            raise
        parser.exit(EXIT_BAD_INPUT, f"error: {' '.join(str(err).split())}\n")  # one line
    except KeyboardInterrupt:
        if args.debug:
            raise
        parser.exit(EXIT_INTERRUPTED, "interrupted\n")
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for name, k in info["per_weight"].items():
        print(f"{k:>10}  {name}")
    ratio = f"{info['ratio']:.3e}" if info["ratio"] is not None else "unknown (no backbone size recorded)"
    print(f"{info['k']:>10}  selected weights in total; ratio of the backbone: {ratio}")
    print(f"{info['extra_params']:>10}  extra trained parameters (head)")


if __name__ == "__main__":
    main()
