"""``python -m shpeft inspect ADAPTER``: what a saved adapter trains, per layer and in total."""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from .io import read_adapter


def inspect_adapter(path: str) -> dict:
    """Per-weight k, totals and (when recorded) the achieved ratio of a saved adapter."""
    tensors, metadata = read_adapter(path)
    shapes = json.loads(metadata["shapes"])
    per_weight = {n: int(tensors[f"indices::{n}"].numel()) for n in shapes}
    extra = sum(v.numel() for k, v in tensors.items() if k.startswith("extra::"))
    k = sum(per_weight.values())
    backbone = int(metadata["backbone_params"]) if metadata.get("backbone_params") else None
    return {
        "k": k,
        "per_weight": per_weight,
        "extra_params": extra,
        "backbone_params": backbone,
        "ratio": k / backbone if backbone else None,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shpeft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="report k per weight and the achieved trainable ratio")
    inspect.add_argument("adapter", help="an adapter file written by shpeft.save_adapter")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    info = inspect_adapter(args.adapter)
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
