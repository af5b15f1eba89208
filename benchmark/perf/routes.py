"""Time every delta-gradient route of every sparse layer of a prepared SH-PEFT model.

    python -m benchmark.perf.routes --backbone timm:deit_tiny_patch16_224 --batch-size 16 --ratio 1e-2

Each ``SparseDeltaLinear`` is run on the input it gets in the model (captured on one random
batch), forward and backward, once per route of ``shpeft.sparse.DELTA_GRAD_ROUTES``; the table
gives the median milliseconds of each route, the route :func:`shpeft.sparse.pick_route` takes, and
the totals of the picked routes, of the best route per layer and of each route everywhere. This
is how the relative costs in ``shpeft.sparse.ROUTE_COSTS`` are checked on a device.
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

import torch
from torch import Tensor

import baselines
from benchmark.cli import ArgumentParser, add_debug, guarded, positive_int, ratio
from benchmark.config import check_backbone
from shpeft.sparse import DELTA_GRAD_ROUTES, SparseDeltaLinear, pick_route

from .cli import checked_device
from .measure import CLOCKS, PerfConfig, build_backbone, random_batch, timed_ms


def layer_inputs(model: torch.nn.Module, batch: Tensor) -> dict[str, tuple[SparseDeltaLinear, Tensor]]:
    """Every sparse layer of ``model`` with the input it receives on ``batch``."""
    captured: dict[str, tuple[SparseDeltaLinear, Tensor]] = {}
    hooks = [m.register_forward_hook(lambda m, args, out, name=name: captured.__setitem__(name, (m, args[0].detach())))
             for name, m in model.named_modules() if isinstance(m, SparseDeltaLinear)]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    return captured


def time_routes(layer: SparseDeltaLinear, x: Tensor, repeats: int, clock: str = "wall") -> dict[str, float]:
    """Median ms of one forward + backward of ``layer`` on ``x`` for every route."""
    grad_out = torch.randn(*x.shape[:-1], layer.base.out_features, device=x.device)
    forced = layer.route
    times = {}
    for route in DELTA_GRAD_ROUTES:
        layer.route = route

        def step() -> None:
            layer(x).backward(grad_out)
            layer.sparse.delta.grad = None

        step()  # warm-up
        times[route] = statistics.median(timed_ms(step, x.device, clock) for _ in range(repeats))
    layer.route = forced
    return times


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, each value checked by its type (one ``error:`` line for a bad one)."""
    p = ArgumentParser(prog="python -m benchmark.perf.routes", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="timm:deit_tiny_patch16_224")
    p.add_argument("--image-size", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--ratio", type=ratio, default=1e-2)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (CUDA if there is one)")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="CPU timing (as python -m benchmark.perf)")
    add_debug(p)
    return p.parse_args(argv)


def print_routes(args: argparse.Namespace) -> None:
    """Check the backbone, image size and device, then time and print every route of every sparse layer."""
    device = torch.device(checked_device(args.device))
    check_backbone(args.backbone, args.image_size)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PerfConfig(backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size,
                     device=str(device))
    torch.manual_seed(cfg.seed)
    batch = random_batch(cfg, cfg.size, torch.Generator().manual_seed(cfg.seed))
    model = baselines.prepare(baselines.get("shpeft"), build_backbone(cfg, device), args.ratio, [batch]).model
    routes = list(DELTA_GRAD_ROUTES)
    print(f"| layer | shape | k | rows | cols | picked | {' | '.join(f'{r} ms' for r in routes)} |")
    print("|" + "---|" * (6 + len(routes)))
    totals = dict.fromkeys(["picked", "best", *routes], 0.0)
    for name, (layer, x) in layer_inputs(model, batch[0]).items():
        times = time_routes(layer, x, args.repeats, args.clock)
        rows, cols, k = layer.delta_rows.numel(), layer.delta_cols.numel(), layer.sparse.indices.numel()
        picked = pick_route(tuple(layer.sparse.shape), rows, cols, k, x.numel() // x.shape[-1], device.type)
        for route in routes:
            totals[route] += times[route]
        totals["picked"] += times[picked]
        totals["best"] += min(times.values())
        cells = [name, "x".join(map(str, layer.sparse.shape)), str(k), str(rows), str(cols), picked,
                 *(f"{times[r]:.2f}" for r in routes)]
        print("| " + " | ".join(cells) + " |")
    print("\ntotal ms (forward + backward of every sparse layer): "
          + ", ".join(f"{key} {value:.1f}" for key, value in totals.items()))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    guarded(lambda: print_routes(args), debug=args.debug)


if __name__ == "__main__":
    main()
