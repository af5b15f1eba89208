"""Load result files (benchmark.result.Result; docs/architecture.md, "Result JSON") into one flat DataFrame."""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.paths import lr_tag, parse_run_relpath, ratio_tag
from benchmark.result import Result, ResultError
from benchmark.values import NATIVE

IDENTITY = ["dataset", "backbone", "method", "ratio", "seed"]
DEFAULT_LR = "default"  # the lr tag of a run without an explicit learning rate (the method's default)
# Always present, so that downstream code never meets a missing column.
COLUMNS = ["path", "status", "error", *IDENTITY, "ratio_tag", "lr", "lr_tag", "run_id", "budget.achieved_ratio",
           "test.macro_f1", "test.accuracy", "val.macro_f1"]
_SKIP = {"config.identity", "metrics.history"}  # duplicates / per-epoch logs


def flatten(obj: dict, prefix: str = "") -> dict:
    """Nested dicts -> one level with dotted keys (lists stay values)."""
    flat = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if name in _SKIP:
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def run_key(result: Result) -> str | None:
    """What makes two result files one run: equal ``config.identity``, with the training settings taken
    as the run used them (``hparams``) when recorded, so that an explicit lr equal to the default is the
    same run as the default. None when the file has no identity."""
    identity = result.identity
    if identity is None:
        return None
    if result.hparams:
        identity = {k: v for k, v in identity.items() if k not in ("train", "lr")} | {"hparams": result.hparams}
    return json.dumps(identity, sort_keys=True)


def load_run(path: str | Path) -> dict:
    """One result file -> one flat record; a file that is not a valid result gets status ``corrupt``
    with the reader's reason (its identity read back from the path)."""
    path = Path(path)
    try:
        result = Result.read(path)
    except ResultError as err:
        return {"path": str(path), "status": "corrupt", "error": str(err), **parse_run_relpath(path)}
    config = result.config
    return {
        "path": str(path), "status": result.status, "error": result.error,
        **{k: config.get(k) for k in IDENTITY}, "ratio": result.ratio,
        "lr": result.lr,
        "run_id": run_key(result) or str(path),  # a tuning cell and a final cell at the same lr: one run
        **flatten({k: v for k, v in config.items() if k not in IDENTITY}, "config."),
        **flatten(result.hparams, "hparams."),
        **flatten(result.budget or {}, "budget."),
        **flatten(result.recipe or {}, "recipe."),
        **flatten(result.split_metrics("test"), "test."),
        **flatten(result.split_metrics("val"), "val."),
        "best_epoch": (result.metrics or {}).get("best_epoch"),
        **flatten(result.perf or {}, "perf."),
        **flatten(result.provenance or {}, "provenance."),
    }


def find_run_files(root: str | Path) -> list[Path]:
    """Every ``*.json`` under root (hidden temporary files excluded), sorted."""
    return sorted(p for p in Path(root).rglob("*.json") if not p.name.startswith("."))


def _lr_tag(lr: float) -> str:
    return DEFAULT_LR if lr is None or (isinstance(lr, float) and math.isnan(lr)) else lr_tag(lr)


def deduplicate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: of the files with the same ``run_id`` (``run_key``), the first finished ('ok') one,
    else the first."""
    ranked = df.assign(_unfinished=df["status"].ne("ok")).sort_values("_unfinished", kind="stable")
    return ranked.drop_duplicates("run_id").drop(columns="_unfinished").sort_index()


def load_runs(source: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """A results directory or a list of files -> one row per run (see ``COLUMNS``; duplicates of one
    run, by ``config.identity``, counted once)."""
    if isinstance(source, (str, Path)):
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"no results at {source}")
        paths = find_run_files(source) if source.is_dir() else [source]
    else:
        paths = [Path(p) for p in source]
    df = pd.DataFrame([load_run(p) for p in paths])
    df = df.reindex(columns=[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)])
    df["run_id"] = df["run_id"].fillna(df["path"])
    df = deduplicate(df.reset_index(drop=True)).reset_index(drop=True)
    df["ratio"] = pd.to_numeric(df["ratio"], errors="coerce")
    df["ratio_tag"] = [ratio_tag(r) for r in df["ratio"]]
    df["lr"] = pd.to_numeric(df["lr"], errors="coerce")
    df["lr_tag"] = [_lr_tag(lr) for lr in df["lr"]]
    for col in ("budget.achieved_ratio", "test.macro_f1", "test.accuracy", "val.macro_f1"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def one_ratio_per_method(df: pd.DataFrame, ratio: float | None,
                         overrides: dict[str, float | str] | None = None) -> pd.DataFrame:
    """Keep one ratio per method: ``overrides[method]`` if given, else ``ratio`` if the method
    has runs there, else its native size, else its ratio closest to ``ratio`` in log space
    (``ratio=None``: the native size; a method without one keeps all its runs)."""
    keep = []
    for method, runs in df.groupby("method", sort=False):
        tags = set(runs["ratio_tag"])
        wanted = ratio_tag((overrides or {}).get(method, ratio))
        if wanted not in tags and ratio is None:
            keep.append(runs)
            continue
        if wanted not in tags:
            numeric = runs["ratio"].dropna()
            wanted = NATIVE if NATIVE in tags or numeric.empty else ratio_tag(
                numeric.iloc[int(np.argmin(np.abs(np.log(numeric.to_numpy()) - np.log(ratio))))])
        keep.append(runs[runs["ratio_tag"] == wanted])
    return pd.concat(keep) if keep else df.iloc[:0]
