"""Load result JSONs (docs/architecture.md, "Result JSON") into one flat DataFrame."""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.paths import NATIVE, lr_tag, ratio_tag, parse_run_relpath

SCHEMA = 1
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


def effective_lr(data: dict) -> float | None:
    """The learning rate a run trained with: ``hparams.lr`` (written by the runner), else ``config.lr``
    (older files; None = the method's default)."""
    lr = (data.get("hparams") or {}).get("lr", data["config"].get("lr"))
    return None if lr is None else float(lr)


def run_key(data: dict) -> str | None:
    """What makes two result files one run: equal ``config.identity``, with the training settings taken
    as the run used them (``hparams``) when recorded, so that an explicit lr equal to the default is the
    same run as the default. None when the file has no identity."""
    identity = data["config"].get("identity")
    if identity is None:
        return None
    if "hparams" in data:
        identity = {k: v for k, v in identity.items() if k not in ("train", "lr")} | {"hparams": data["hparams"]}
    return json.dumps(identity, sort_keys=True)


def load_run(path: str | Path) -> dict:
    """One result file -> one flat record; unreadable files get status ``corrupt``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise ValueError("not a result object (no 'config')")
        if data.get("schema") != SCHEMA:
            raise ValueError(f"unsupported schema {data.get('schema')!r} (expected {SCHEMA})")
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        return {"path": str(path), "status": "corrupt", "error": f"{type(err).__name__}: {err}",
                **parse_run_relpath(path)}
    config = data["config"]
    metrics = data.get("metrics") or {}
    record = {
        "path": str(path), "status": data.get("status"), "error": data.get("error"),
        **{k: config.get(k) for k in IDENTITY},
        "lr": effective_lr(data),
        "run_id": run_key(data) or str(path),  # a tuning cell and a final cell at the same lr: one run
        **flatten({k: v for k, v in config.items() if k not in IDENTITY}, "config."),
        **flatten(data.get("hparams") or {}, "hparams."),
        **flatten(data.get("budget") or {}, "budget."),
        **flatten(data.get("recipe") or {}, "recipe."),
        **flatten(metrics.get("test") or {}, "test."),
        **flatten(metrics.get("val") or {}, "val."),
        "best_epoch": metrics.get("best_epoch"),
        **flatten(data.get("perf") or {}, "perf."),
        **flatten(data.get("provenance") or {}, "provenance."),
    }
    return record


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
