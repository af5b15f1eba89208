"""A study (one YAML config of the Snakemake DAG) as Python: its checks, its cells and the command-line
settings each cell gets. The DAG's rules stay thin; everything they compute is here and tested.

A study lists datasets, methods with their target ratios, seeds, and ``train`` settings (any field of
:class:`~benchmark.train.TrainConfig`, plus ``n_per_class`` and ``calib_images``): only what the study
sets is passed on, every other default comes from the dataclasses. ``method_train`` overrides some of
them for one method's cells (e.g. more epochs for a method that converges slower; the tables name
every such difference). An optional ``lr_sweep`` runs the
swept methods at several learning rates on ``lr_sweep.seeds``; the lr with the best mean validation
macro-F1 (:func:`select_lr`) then runs on the remaining seeds.
"""
from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import baselines
from benchmark import data
from benchmark.config import ConfigError, from_flat, validate_values
from benchmark.paths import NATIVE, lr_tag, parse_ratio_tag, run_relpath
from benchmark.selection import SELECTION_METRIC, best_lr, run_score

STUDY_SETTINGS = ("n_per_class", "calib_images")  # RunConfig fields a study may set under `train:`


@dataclass(frozen=True)
class Cell:
    """One result file of a study; ``lr`` is set for the cells of a learning-rate sweep."""

    dataset: str
    method: str
    ratio: float | None
    seed: int
    lr: float | None = None

    def path(self, study: Mapping[str, Any]) -> str:
        rel = run_relpath(self.dataset, study["backbone"], self.method, self.ratio, self.seed, self.lr)
        return f"{study['output']}/runs/{rel.as_posix()}"


def check(study: Mapping[str, Any]) -> None:
    """Every name and value of a (schema-validated) study, before any job runs: datasets, methods,
    the backbone, the training settings, sweep methods. Raises :class:`ConfigError` naming the valid choices."""
    for name in study["datasets"]:
        try:
            data.get(name)
        except KeyError as err:
            raise ConfigError(f"{study['study']}: datasets: {err.args[0]}") from None
    for name in list(study["methods"]) + list(_sweep(study).get("lrs", {})) + list(study.get("method_train", {})):
        try:
            baselines.get(name)
        except KeyError as err:
            raise ConfigError(f"{study['study']}: methods: {err.args[0]}") from None
    for method in [next(iter(study["methods"])), *study.get("method_train", {})]:
        cfg = from_flat({"dataset": study["datasets"][0], "method": method, **run_settings(study, method)})
        try:
            validate_values(cfg)
        except ConfigError as err:
            where = f"method_train: {method}: " if method in study.get("method_train", {}) else ""
            raise ConfigError(f"{study['study']}: {where}{err}") from None
    for method in study["methods"]:
        if sweep_lrs(study, method) and "lr" in run_settings(study, method):
            raise ConfigError(f"{study['study']}: {method}: a fixed lr (train / method_train) and an lr_sweep "
                              "both set its learning rate; drop one")


def run_settings(study: Mapping[str, Any], method: str | None = None) -> dict[str, Any]:
    """The settings the cells of ``study`` (of ``method``: with its ``method_train`` overrides) run
    with; only what the study sets."""
    settings = {k: study[k] for k in ("backbone", "pretrained", "image_size", "checkpoint") if study.get(k) is not None}
    return {**settings, **study.get("train", {}), **study.get("method_train", {}).get(method, {})}


def run_args(study: Mapping[str, Any], method: str | None = None) -> str:
    """:func:`run_settings` as ``python -m benchmark.run`` flags."""
    return " ".join(f"--{k.replace('_', '-')} {shlex.quote(_text(v))}"
                    for k, v in run_settings(study, method).items())


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _sweep(study: Mapping[str, Any]) -> Mapping[str, Any]:
    return study.get("lr_sweep") or {}


def sweep_lrs(study: Mapping[str, Any], method: str) -> list[float]:
    """The learning rates ``method`` is swept over in ``study`` (empty: not swept). Explicit lists
    (``lr_sweep.lrs``) win; else ``lr_sweep.multipliers`` x the method's default lr, as ``%g``."""
    sweep = _sweep(study)
    if method in sweep.get("lrs", {}):
        return [float(lr_tag(lr)) for lr in sweep["lrs"][method]]
    if sweep.get("multipliers") and method not in sweep.get("exclude", []):
        scale = run_settings(study, method).get("lr_scale", 1.0)
        return [float(lr_tag(m * baselines.get(method).recipe.lr * scale)) for m in sweep["multipliers"]]
    return []


def sweep_seeds(study: Mapping[str, Any]) -> list[int]:
    return list(_sweep(study).get("seeds", study["seeds"][:1]))


def cells(study: Mapping[str, Any]) -> list[Cell]:
    """Every result file of a study: plain cells, sweep cells (each lr on the sweep seeds), and the
    chosen-lr cells of swept methods on the other seeds."""
    out = []
    for d in study["datasets"]:
        for m, ratios in study["methods"].items():
            lrs = sweep_lrs(study, m)
            for r in ratios:
                r = None if r == NATIVE else float(r)
                if not lrs:
                    out += [Cell(d, m, r, s) for s in study["seeds"]]
                    continue
                out += [Cell(d, m, r, s, lr) for s in sweep_seeds(study) for lr in lrs]
                out += [Cell(d, m, r, s) for s in study["seeds"] if s not in sweep_seeds(study)]
    return out


def sweep_inputs(study: Mapping[str, Any], dataset: str, method: str, ratio: str) -> list[str]:
    """The sweep cells whose validation scores choose the lr of (dataset, method, ratio)."""
    return [Cell(dataset, method, parse_ratio_tag(ratio), s, lr).path(study)
            for s in sweep_seeds(study) for lr in sweep_lrs(study, method)]


def select_lr(results: Sequence[Mapping[str, Any]]) -> tuple[float, dict[float, float]]:
    """The learning rate of a sweep's runs with the best mean validation macro-F1 (benchmark.selection's
    rule) and every candidate's mean. When every run is ``unreachable`` the lr does not matter (nothing
    trains): the smallest is returned with no means."""
    if all(r.get("status") == "unreachable" for r in results):
        return min(r["hparams"]["lr"] for r in results), {}
    scores: dict[float, list[float]] = {}
    for r in results:
        val = r.get("metrics", {}).get("val", {}).get(SELECTION_METRIC)
        scores.setdefault(r["hparams"]["lr"], []).append(run_score(r.get("status"), val))
    means = {lr: sum(v) / len(v) for lr, v in scores.items()}
    return best_lr(means), means


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.study", description="learning-rate selection of a sweep")
    parser.add_argument("results", nargs="+", help="result JSONs of one (dataset, method, ratio) sweep")
    parser.add_argument("--out", required=True, help="write the chosen lr (%%g) here")
    args = parser.parse_args(argv)
    best, means = select_lr([json.loads(Path(p).read_text()) for p in args.results])
    Path(args.out).write_text(lr_tag(best) + "\n")
    print(f"lr {lr_tag(best)}; mean val macro-F1 per lr: "
          + (", ".join(f"{lr_tag(k)}: {v:.4f}" for k, v in sorted(means.items())) or "none (unreachable)"))


if __name__ == "__main__":
    main()
