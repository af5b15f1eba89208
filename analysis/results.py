"""Load result JSONs (docs/architecture.md, "Result JSON") into one flat DataFrame."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA = 1
IDENTITY = ["dataset", "backbone", "method", "ratio", "seed"]
# Always present, so that downstream code never meets a missing column.
COLUMNS = ["path", "status", "error", *IDENTITY, "ratio_tag", "budget.achieved_ratio",
           "test.macro_f1", "test.accuracy"]
_SKIP = {"config.identity", "metrics.history"}  # duplicates / per-epoch logs
_RUN_PATH = re.compile(r"(?:^|/)(?P<dataset>[^/]+)/(?P<backbone>[^/]+)/(?P<method>[^/]+)"
                       r"/r(?P<ratio>native|\d[\d.]*(?:e[+-]?\d+)?)/s(?P<seed>\d+)\.json$")


def ratio_tag(ratio: float | str | None) -> str:
    """``native`` for a method's own size, else ``%g`` of the ratio (as benchmark/paths.py)."""
    if ratio is None or ratio == "native" or (isinstance(ratio, float) and np.isnan(ratio)):
        return "native"
    return f"{float(ratio):g}"


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


def identity_from_path(path: Path) -> dict:
    """Recover the run identity from ``<dataset>/<backbone>/<method>/r<ratio>/s<seed>.json``."""
    match = _RUN_PATH.search(Path(path).as_posix())
    if not match:
        return {}
    tag = match["ratio"]
    return {**match.groupdict(), "ratio": None if tag == "native" else float(tag), "seed": int(match["seed"])}


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
                **identity_from_path(path)}
    config = data["config"]
    metrics = data.get("metrics") or {}
    record = {
        "path": str(path), "status": data.get("status"), "error": data.get("error"),
        **{k: config.get(k) for k in IDENTITY},
        **flatten({k: v for k, v in config.items() if k not in IDENTITY}, "config."),
        **flatten(data.get("budget") or {}, "budget."),
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


def load_runs(source: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """A results directory or a list of files -> one row per run (see ``COLUMNS``)."""
    if isinstance(source, (str, Path)):
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"no results at {source}")
        paths = find_run_files(source) if source.is_dir() else [source]
    else:
        paths = [Path(p) for p in source]
    df = pd.DataFrame([load_run(p) for p in paths])
    df = df.reindex(columns=[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)])
    df["ratio"] = pd.to_numeric(df["ratio"], errors="coerce")
    df["ratio_tag"] = [ratio_tag(r) for r in df["ratio"]]
    for col in ("budget.achieved_ratio", "test.macro_f1", "test.accuracy"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def one_ratio_per_method(df: pd.DataFrame, ratio: float = 1e-4,
                         overrides: dict[str, float | str] | None = None) -> pd.DataFrame:
    """Keep one ratio per method: ``overrides[method]`` if given, else ``ratio`` if the method
    has runs there, else its native size, else its ratio closest to ``ratio`` in log space."""
    keep = []
    for method, runs in df.groupby("method", sort=False):
        tags = set(runs["ratio_tag"])
        wanted = ratio_tag((overrides or {}).get(method, ratio))
        if wanted not in tags:
            numeric = runs["ratio"].dropna()
            wanted = "native" if "native" in tags or numeric.empty else ratio_tag(
                numeric.iloc[int(np.argmin(np.abs(np.log(numeric.to_numpy()) - np.log(ratio))))])
        keep.append(runs[runs["ratio_tag"] == wanted])
    return pd.concat(keep) if keep else df.iloc[:0]
