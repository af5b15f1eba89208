"""One benchmark cell: (dataset, backbone, method, ratio, seed) -> one result JSON.

    python -m benchmark.run --dataset synthetic-medmnist --backbone tiny_vit --method shpeft --ratio 1e-2
    python -m benchmark.run --rerun results/runs/.../s0.json --out /tmp/again.json   # same config, compare metrics

Every setting is checked before any data or model work (a bad one: one ``error: ...`` line, exit 2).
The JSON (benchmark.result.Result; schema in docs/architecture.md) carries the metrics, the trainable
budget that was met, the effective hyper-parameters, the calibration sample, throughput, peak memory
and provenance. It is written atomically; a finished run with the same config is skipped unless
``--force``. A NaN loss is recorded as a failed run and a ratio the method cannot reach as
unreachable (exit code 0, so a DAG goes on). Ctrl-C stops with nothing written.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.cli import ArgumentParser, add_debug, guarded, wants_debug
from benchmark.config import ConfigError, RunConfig, add_arguments, from_flat, from_recorded, given, result_path, validate
from benchmark.result import Result, ResultError


def peak_memory(device) -> dict:
    import torch

    if device.type == "cuda":
        return {"peak_mem_bytes": torch.cuda.max_memory_allocated(device), "peak_mem_kind": "cuda_max_allocated"}
    return {"peak_mem_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak_mem_kind": "process_max_rss"}


def save_trained_state(model, path: Path, backbone_params: int) -> None:
    """The trained weights: an shpeft adapter for sparse methods, else every trainable tensor."""
    import shpeft
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    if shpeft.delta_sites(model):
        shpeft.save_adapter(model, path, backbone_params=backbone_params)
    else:
        trained = {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trained, str(path))


class Phases:
    """Where a cell's process time goes: ``startup`` (the interpreter and the imports, from the process's
    creation until the run begins), then the phases :meth:`lap` names (data and model setup, the method's
    preparation, training, evaluation). Recorded in ``perf.phases`` to find overhead worth cutting."""

    def __init__(self) -> None:
        import psutil

        self.seconds = {"startup": time.time() - psutil.Process().create_time()}
        self._mark = time.perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the last lap to phase ``name``."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._mark
        self._mark = now

    def move(self, seconds: float, source: str, target: str) -> None:
        """Re-charge ``seconds`` of ``source`` to ``target`` (fit's validation passes are evaluation)."""
        self.seconds[source] -= seconds
        self.seconds[target] = self.seconds.get(target, 0.0) + seconds


def finished_result(path: Path, cfg: RunConfig) -> Result | None:
    """The result at ``path`` if it is finished with the same config (a valid file; else None)."""
    try:
        old = Result.read(path)
    except ResultError:
        return None
    same = old.identity == json.loads(json.dumps(cfg.identity()))
    return old if same and old.finished else None


def run(cfg: RunConfig) -> Result:
    """Validate, run one cell and write its result JSON; return the result."""
    validate(cfg)
    path = result_path(cfg)
    if not cfg.force and (old := finished_result(path, cfg)):
        print(f"skip: {path} is finished with the same config (use --force to rerun)")
        return old
    return _train_and_record(cfg, path)


def _train_and_record(cfg: RunConfig, path: Path) -> Result:
    import torch

    import baselines
    import shpeft
    from benchmark import cell
    from benchmark.config import resolve_train
    from benchmark.provenance import provenance
    from benchmark.train import NonFiniteLossError, evaluate, fit

    phases = Phases()
    method = baselines.get(cfg.method)
    device = cell.resolve_device(cfg.device)
    cell.seed_everything(cfg.seed)
    started = time.perf_counter()
    settings = resolve_train(cfg.train, method.recipe)
    splits, info = cell.load_splits(cfg)
    num_classes = info["num_classes"]
    model = cell.build_model(cfg, num_classes, device)
    calib, calibration = cell.calibration_split(cfg, splits["train"], num_classes)
    record: dict[str, Any] = dict(
        config={**cfg.flat(), "identity": cfg.identity()}, hparams=settings.record(),
        recipe=method.recipe.asdict(), calibration=calibration,
        provenance={**provenance(device), "data": cell.data_provenance(info)},
    )
    phases.lap("setup")

    def finish(status: str, **blocks: Any) -> Result:
        result = Result(status=status, **record, **blocks)
        result.write(path)
        if not cfg.quiet:
            print(f"result: {path}")
        return result

    def cost(**extra: Any) -> dict:
        return {"wall_s": time.perf_counter() - started, **extra, **peak_memory(device),
                "phases": {f"{k}_s": v for k, v in phases.seconds.items()}}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        prepare_start = time.perf_counter()
        prepared = baselines.prepare(method, model, cfg.ratio, list(cell.make_batches(cfg, calib, model, device)))
        prepare_s = time.perf_counter() - prepare_start
        phases.lap("prepare")
        record["hparams"].update(prepared.hparams)
        if not prepared.reachable:
            return finish("unreachable", error=prepared.note, budget=prepared.budget(), perf=cost(prepare_s=prepare_s))
        batches = {name: cell.make_batches(cfg, split, model, device, train=name == "train", seed=cfg.seed)
                   for name, split in splits.items()}
        fitted = fit(prepared.model, batches["train"], batches["val"], settings, num_classes,
                     no_decay=prepared.no_decay, log=None if cfg.quiet else print)
        phases.lap("train")
        phases.move(fitted["val_s"], "train", "eval")
    except (NonFiniteLossError, shpeft.NonFiniteError) as err:  # recorded, so a DAG goes on
        return finish("failed", error=f"{type(err).__name__}: {err}", perf=cost())
    metrics = {
        "test": evaluate(prepared.model, batches["test"], num_classes),
        "val": evaluate(prepared.model, batches["val"], num_classes),
        "best_epoch": fitted["best_epoch"], "history": fitted["history"],
    }
    phases.lap("eval")
    if cfg.save_state:
        save_trained_state(prepared.model, Path(cfg.save_state), prepared.backbone_params)
    return finish("ok", budget=prepared.budget(), metrics=metrics,
                  perf=cost(prepare_s=prepare_s, train_img_per_s=fitted["train_img_per_s"]))


# --- re-running a recorded cell ---------------------------------------------------------------------------

def recorded_config(result_file: str | Path, overrides: dict[str, Any]) -> RunConfig:
    """The config recorded in a result file, with ``overrides`` (data root, checkpoint, out, ...)."""
    try:
        return from_recorded(Result.read(result_file).config, overrides)
    except (ResultError, ConfigError, TypeError) as err:
        raise ConfigError(f"not a re-runnable result: {err}", "rerun") from None


def metric_differences(old: Result, new: Result) -> list[tuple[str, float, float, float]]:
    """(metric, recorded, rerun, rerun - recorded) for every scalar test/val metric of both results."""
    rows = []
    for split in ("test", "val"):
        a, b = old.split_metrics(split), new.split_metrics(split)
        for name in sorted(set(a) & set(b)):
            if isinstance(a[name], (int, float)) and isinstance(b[name], (int, float)):
                rows.append((f"{split}.{name}", a[name], b[name], b[name] - a[name]))
    return rows


# --- command line -------------------------------------------------------------------------------------------

def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m benchmark.run", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rerun", metavar="RESULT.json", help="run the config recorded in RESULT.json again "
                   "(other options override it: --out, --data-root, --checkpoint, --device) and print the metric differences")
    add_debug(p)
    add_arguments(p, required=False)
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[RunConfig, argparse.Namespace]:
    args = parser().parse_args(argv)
    settings = given(args)
    if args.rerun:
        return recorded_config(args.rerun, settings), args
    missing = [f"--{k}" for k in ("dataset", "method") if k not in settings]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required (or --rerun RESULT.json)")
    return from_flat(settings), args


def _main(argv: Sequence[str] | None) -> None:
    cfg, args = parse_args(argv)
    result = run(cfg)
    if args.rerun:
        for name, a, b, diff in metric_differences(Result.read(args.rerun), result):
            print(f"{name:<28} recorded {a:.4f}  rerun {b:.4f}  difference {diff:+.4f}")
    test = result.split_metrics("test")
    print(json.dumps({"status": result.status, "error": result.error, "test_macro_f1": test.get("macro_f1"),
                      "achieved_ratio": (result.budget or {}).get("achieved_ratio")}))


def main(argv: Sequence[str] | None = None) -> None:
    guarded(lambda: _main(argv), debug=wants_debug(argv))


if __name__ == "__main__":
    main()
