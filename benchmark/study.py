"""A study (one YAML config of the Snakemake DAG) as Python: its checks, its cells and the command-line
settings each cell gets. The DAG's rules stay thin; everything they compute is here and tested.

A study lists datasets, methods with their target ratios, seeds, and ``train`` settings (any field of
:class:`~benchmark.config.TrainConfig`, plus ``n_per_class`` and ``calib_images``): only what the study
sets is passed on, every other default comes from the dataclasses. ``dataset_train`` sets some of them
for one dataset's cells (e.g. a training subset of a large dataset, for every method alike);
``method_train`` for one method's cells, a protocol deviation the tables mark and the claims leave
out. An optional ``lr_sweep`` runs the swept methods at several learning rates on ``lr_sweep.seeds``,
extended past an edge of the grid by rounds of the DAG (benchmark.selection); the chosen lr then
runs on the remaining seeds.

    python -m benchmark.study choose RESULT.json ... --grid 1e-3 3e-3 --out round0.json   # one sweep round
    python -m benchmark.study lr round1.json --out r0.001.lr                               # the settled lr
"""
from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.cli import ArgumentParser, add_debug, guarded, wants_debug
from benchmark.config import ConfigError, from_flat, validate_values
from benchmark.paths import lr_tag, parse_ratio_tag, run_relpath
from benchmark.result import Result
from benchmark.selection import Choice, SweepRule, base_grid, choose, lr_value, run_score
from benchmark.values import NATIVE

STUDY_SETTINGS = ("n_per_class", "calib_images")  # RunConfig fields a study may set under `train:`
TOP_LEVEL = ("backbone", "pretrained", "image_size", "checkpoint")  # RunConfig fields set at a study's top level
STUDY_FILE = "study_file"  # `--config study_file=X.yaml`: the study to run (other --config keys overlay it)
OVERRIDES = ("dataset_train", "method_train")  # per-dataset / per-method replacements of `train:`
SPARSITY_METHOD = "full"  # the sparsity analysis reads fully fine-tuned models, at this method's settings and lr


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


def read_yaml(path: str | Path, what: str = "study") -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing or malformed file is a one-line :class:`ConfigError`
    naming the file and, for a syntax error, the line."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"{what} file {str(path)!r}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{what} file {str(path)!r}{where}: not valid YAML ({problem})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} file {str(path)!r}: expected a mapping of settings, got {type(loaded).__name__}")
    return loaded


def select_study(config: Mapping[str, Any], config_files: Sequence[str], default_file: str | Path) -> tuple[dict, str]:
    """The study Snakemake was asked for, and where it came from. ``--configfile X``: exactly X (with
    ``--config`` on top, as Snakemake merged them). Otherwise the file ``--config study_file=X`` names (default:
    ``default_file``) with every other ``--config`` key replacing that top-level key: ``--config
    checkpoint=W`` changes one setting of the study, not the whole grid."""
    if config_files:
        return dict(config), ", ".join(map(str, config_files))
    source = config.get(STUDY_FILE, default_file)
    overlay = {k: v for k, v in config.items() if k != STUDY_FILE}
    return {**read_yaml(source), **overlay}, str(source)


def write_study(study: Mapping[str, Any], path: str | Path) -> None:
    """The study as it ran (validated, defaults filled, overlays applied): its declared protocol and claims,
    beside its results."""
    import yaml

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(json.loads(json.dumps(study)), sort_keys=False))


def check_schema(study: Mapping[str, Any], schema_file: str | Path, source: str) -> None:
    """The study against the JSON schema, the first problem as one line naming its key
    (``cpu.yaml: train: epochs: 0 is less than the minimum of 1``)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(read_yaml(schema_file, "schema"))
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(study)))
    if error is not None:
        where = "".join(f"{part}: " for part in error.absolute_path)
        raise ConfigError(f"{source}: {where}{error.message}")


def _lookup(study: Mapping[str, Any], where: str, names: Sequence[str], get) -> None:
    for name in names:
        try:
            get(name)
        except KeyError as err:
            raise ConfigError(f"{study['study']}: {where}: {err.args[0]}") from None


def check(study: Mapping[str, Any]) -> None:
    """Every name and value of a (schema-validated) study, before any job runs: datasets, methods,
    the backbone, the training settings (named by their key in the file), sweep methods. Raises
    :class:`ConfigError` naming the key, the value and the valid choices."""
    import baselines
    from benchmark import data

    name = study["study"]
    _lookup(study, "datasets", study["datasets"], data.get)
    _lookup(study, "dataset_train", list(study.get("dataset_train", {})), data.get)
    _lookup(study, "methods", list(study["methods"]), baselines.get)
    for key in ("lrs", "exclude"):
        _lookup(study, f"lr_sweep: {key}", list(_sweep(study).get(key, [])), baselines.get)
    _lookup(study, "method_train", list(study.get("method_train", {})), baselines.get)
    for override in OVERRIDES:
        unused = sorted(set(study.get(override, {})) - set(study["datasets" if override == "dataset_train" else "methods"]))
        if unused:
            raise ConfigError(f"{name}: {override}: {', '.join(unused)} not in the study's "
                              f"{'datasets' if override == 'dataset_train' else 'methods'}")
    first = study["datasets"][0]
    places = [("train: ", first, next(iter(study["methods"])))]
    places += [(f"dataset_train: {d}: ", d, next(iter(study["methods"]))) for d in study.get("dataset_train", {})]
    places += [(f"method_train: {m}: ", first, m) for m in study.get("method_train", {})]
    for where, dataset, method in places:
        try:
            validate_values(from_flat({"dataset": dataset, "method": method, **run_settings(study, method, dataset)}))
        except ConfigError as err:
            raise ConfigError(f"{name}: {err.in_file('' if err.key in TOP_LEVEL else where)}") from None
    for method in study["methods"]:
        if sweep_lrs(study, method) and any("lr" in run_settings(study, method, d) for d in study["datasets"]):
            raise ConfigError(f"{name}: {method}: a fixed lr (train / dataset_train / method_train) and an "
                              "lr_sweep both set its learning rate; drop one")


def run_settings(study: Mapping[str, Any], method: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """The settings the cells of ``study`` run with (of ``dataset`` and ``method``: with their
    ``dataset_train`` / ``method_train`` overrides); only what the study sets."""
    settings = {k: study[k] for k in TOP_LEVEL if study.get(k) is not None}
    return {**settings, **study.get("train", {}), **study.get("dataset_train", {}).get(dataset, {}),
            **study.get("method_train", {}).get(method, {})}


def run_args(study: Mapping[str, Any], method: str | None = None, dataset: str | None = None) -> str:
    """:func:`run_settings` as ``python -m benchmark.run`` flags."""
    return " ".join(f"--{k.replace('_', '-')} {shlex.quote(_text(v))}"
                    for k, v in run_settings(study, method, dataset).items())


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _sweep(study: Mapping[str, Any]) -> Mapping[str, Any]:
    return study.get("lr_sweep") or {}


def sweep_rule(study: Mapping[str, Any]) -> SweepRule:
    return SweepRule.from_config(_sweep(study))


def sweep_lrs(study: Mapping[str, Any], method: str) -> list[float]:
    """The learning rates ``method``'s sweep starts at (empty: not swept): benchmark.selection.base_grid
    with the method's recipe lr and the study's ``lr_scale``."""
    import baselines

    scale = run_settings(study, method).get("lr_scale", 1.0)
    return base_grid(_sweep(study), method, baselines.get(method).recipe.lr, scale)


def sweep_seeds(study: Mapping[str, Any]) -> list[int]:
    return list(_sweep(study).get("seeds", study["seeds"][:1]))


def ratios(study: Mapping[str, Any], method: str) -> list[float | None]:
    return [None if r == NATIVE else float(r) for r in study["methods"][method]]


def cells(study: Mapping[str, Any]) -> list[Cell]:
    """Every result file of a study known before it runs: plain cells, the sweep cells of each grid
    (each lr on the sweep seeds), and the chosen-lr cells of swept methods on the other seeds. The
    cells of a sweep's extensions are found by the DAG's sweep rounds."""
    out = []
    for d in study["datasets"]:
        for m in study["methods"]:
            lrs = sweep_lrs(study, m)
            for r in ratios(study, m):
                if not lrs:
                    out += [Cell(d, m, r, s) for s in study["seeds"]]
                    continue
                out += [Cell(d, m, r, s, lr) for s in sweep_seeds(study) for lr in lrs]
                out += [Cell(d, m, r, s) for s in study["seeds"] if s not in sweep_seeds(study)]
    return out


def round_lrs(study: Mapping[str, Any], method: str, earlier: Sequence[Mapping[str, Any]]) -> list[float]:
    """The lrs a sweep round compares: the grid plus the extension each earlier round asked for."""
    return sweep_lrs(study, method) + [lr_value(r["next_lr"]) for r in earlier]


def sweep_inputs(study: Mapping[str, Any], dataset: str, method: str, ratio: str, lrs: Sequence[float]) -> list[str]:
    """The sweep cells of (dataset, method, ratio) at ``lrs`` on the sweep seeds."""
    return [Cell(dataset, method, parse_ratio_tag(ratio), s, lr).path(study) for s in sweep_seeds(study) for lr in lrs]


def choose_from_results(results: Sequence[Result], grid: Sequence[float], rule: SweepRule) -> Choice:
    """benchmark.selection.choose over result files: each lr's validation scores (never a test metric)."""
    scores: dict[float, list[float]] = {}
    for r in results:
        if r.status != "unreachable":
            scores.setdefault(r.lr, []).append(run_score(r.status, r.val_score))
    return choose(scores, grid, rule, sorted({int(r.config["seed"]) for r in results}))


def settled_lr(choice: Mapping[str, Any]) -> float:
    """The lr the other seeds run at: the choice's, or the grid's smallest when nothing trained (every
    run unreachable: the lr does not matter)."""
    return choice["lr"] if choice["lr"] is not None else min(choice["grid"])


# --- command line (the DAG's sweep rules) -----------------------------------------------------------------

def _choose(args: argparse.Namespace) -> None:
    choice = choose_from_results([Result.read(p) for p in args.results], args.grid,
                                 SweepRule(args.step, args.max_extensions))
    Path(args.out).write_text(json.dumps(choice.record(), indent=1) + "\n")
    means = ", ".join(f"{lr}: {m:.4f}" for lr, m in choice.record()["means"].items()) or "none (unreachable)"
    follow = f"next: extend to {lr_tag(choice.next_lr)}" if choice.next_lr else \
        "settled" + (" (extension limit hit)" if choice.limit_hit else "")
    print(f"lr {choice.lr}; mean val macro-F1 per lr: {means}; {follow}")


def _lr(args: argparse.Namespace) -> None:
    choice = json.loads(Path(args.round).read_text())
    if choice["next_lr"] is not None:
        raise ConfigError(f"{args.round} asks for another sweep round (lr {choice['next_lr']}); not settled")
    Path(args.out).write_text(lr_tag(settled_lr(choice)) + "\n")


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m benchmark.study", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug(p)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("choose", help="one sweep round: the best lr on validation, and the next extension")
    c.add_argument("results", nargs="+", help="result JSONs of one (dataset, method, ratio) sweep")
    c.add_argument("--grid", type=float, nargs="+", required=True, help="the sweep's starting grid")
    c.add_argument("--step", type=float, default=SweepRule.step, help="extension factor (default: %(default)g)")
    c.add_argument("--max-extensions", type=int, default=SweepRule.max_extensions, help="per side (default: %(default)d)")
    c.add_argument("--out", required=True, help="the round's JSON")
    c.set_defaults(run=_choose)
    s = sub.add_parser("lr", help="write the settled lr of a sweep's last round")
    s.add_argument("round", help="the last round's JSON (written by choose)")
    s.add_argument("--out", required=True, help="write the lr (%%g) here")
    s.set_defaults(run=_lr)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    def body() -> None:
        args = parser().parse_args(argv)
        args.run(args)

    guarded(body, debug=wants_debug(argv))


if __name__ == "__main__":
    main()
