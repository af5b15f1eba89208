"""What makes a comparison of two rows unfair, read from the runs: protocol deviations (a method trained
under other settings than the study's common budget) and the confounds between two compared rows
(learning-rate selection, epochs, sweep width, code commit). Every table that compares rows, and the
claims, list them from here, so no comparison hides a difference in protocol."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

SCHEDULE_SETTINGS = ("epochs", "batch_size", "warmup_epochs", "grad_clip", "augment")  # no recipe sets these


def _setting_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def schedule_differences(df: pd.DataFrame) -> dict[str, list[str]]:
    """Method -> the schedule settings it ran unlike most runs (e.g. ``epochs 12 (most runs: 6)``)."""
    ran = df[df["status"] == "ok"] if "status" in df.columns else df
    notes: dict[str, list[str]] = {}
    for name in SCHEDULE_SETTINGS:
        col = f"hparams.{name}"
        if col not in ran.columns or ran[col].dropna().empty:
            continue
        usual = ran[col].mode().iloc[0]
        for method, values in ran.dropna(subset=[col]).groupby("method")[col]:
            other = sorted({v for v in values if v != usual}, key=str)
            if other:
                notes.setdefault(method, []).append(
                    f"{name} {', '.join(map(_setting_text, other))} (most runs: {_setting_text(usual)})")
    return notes


def deviations(df: pd.DataFrame, study: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Method -> why its rows are a protocol deviation: a ``method_train`` override of the study, or a
    schedule that differs from most runs'. Such rows are marked in every table and kept out of verdicts."""
    found = {m: f"method_train {dict(v)}" for m, v in ((study or {}).get("method_train") or {}).items()}
    for method, texts in schedule_differences(df).items():
        found[method] = "; ".join(filter(None, [found.get(method), *texts]))
    return found


def _values(rows: pd.DataFrame, column: str) -> set:
    return set(rows[column].dropna().astype(str)) if column in rows.columns else set()


def _selection(choices: pd.DataFrame) -> str:
    """How a row's lr was chosen: ``swept over N lrs`` (+ ``limit hit``), or ``not swept``."""
    if choices.empty:
        return "not swept"
    widths = choices["candidate_lrs"].fillna("").str.split().str.len()
    if widths.max() <= 1:
        return "not swept"
    hit = " (extension limit hit)" if choices.get("limit_hit", pd.Series(dtype=bool)).fillna(False).astype(bool).any() else ""
    span = f"{widths.min()}" if widths.min() == widths.max() else f"{widths.min()}-{widths.max()}"
    return f"swept over {span} lrs{hit}"


def confounds(a: pd.DataFrame, b: pd.DataFrame, choices_a: pd.DataFrame, choices_b: pd.DataFrame,
              deviation: Mapping[str, str] = {}) -> str:
    """The protocol differences between two compared sets of runs, '; '-joined ('' when none): lr
    selection and sweep width, epochs, code commit, and a protocol deviation of either side."""
    found = []
    selection = (_selection(choices_a), _selection(choices_b))
    if selection[0] != selection[1]:
        found.append(f"lr {selection[0]} vs {selection[1]}")
    for label, column in (("epochs", "hparams.epochs"), ("commit", "provenance.git_commit")):
        va, vb = _values(a, column), _values(b, column)
        if va and vb and va != vb:
            short = (lambda vs: ",".join(sorted(v[:7] for v in vs))) if label == "commit" else (lambda vs: ",".join(sorted(vs)))
            found.append(f"{label} {short(va)} vs {short(vb)}")
    for rows in (a, b):
        for method in _values(rows, "method"):
            if method in deviation:
                found.append(f"{method}: protocol deviation ({deviation[method]})")
    return "; ".join(found)


def rows_of(df: pd.DataFrame, method: str, ratio_tags: Iterable[str]) -> pd.DataFrame:
    """The runs of ``method`` at any of ``ratio_tags``."""
    return df[(df["method"] == method) & df["ratio_tag"].isin(list(ratio_tags))]
