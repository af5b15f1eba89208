"""The paper's tables from a runs DataFrame (analysis.results.load_runs): main results,
comparison with the paper's reported numbers, SH-PEFT ablation. Values in percent."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.reference import dataset_statuses, load_reference
from analysis.render import Cell, Table, fmt_percent, fmt_ratio, to_latex, to_markdown
from analysis.results import one_ratio_per_method

AVERAGE = "Average"
METRICS = {"macro_f1": "macro-F1", "accuracy": "accuracy"}
SHPEFT = "shpeft"
PAPER_RATIO = 1e-4  # the paper's ~0.01% of the weights
# SH-PEFT variant method -> (importance kind, estimator); the order is the ablation table's.
SHPEFT_VARIANTS: dict[str, tuple[str, str]] = {
    "shpeft-ts": ("task-specific", "L1"), "shpeft-ts-l2": ("task-specific", "L2"),
    "shpeft-ta": ("task-agnostic", "L1"), "shpeft-ta-l2": ("task-agnostic", "L2"),
    "shpeft": ("hybrid", "L1"), "shpeft-l2": ("hybrid", "L2"),
}
METHOD_ORDER = ("full", "linear", "bitfit", "lora", "adapter", "adaptformer", "vpt-shallow", "vpt-deep",
                "spt", SHPEFT, *SHPEFT_VARIANTS)
STATE_TEXT = {"unreachable": "n/a (unreachable)", "failed": "failed", "corrupt": "corrupt", "missing": "—"}
# Report order of the Markdown tables (file stems); others follow alphabetically.
TABLE_ORDER = ("main_macro_f1", "main_accuracy", "paper_comparison", "ablation_macro_f1", "ablation_accuracy")
CELL_NOTES = [
    "mean ± std (sample std) over seeds; (k/n): only k of the n runs finished ok",
    "failed / n/a (unreachable) / corrupt: no finished run (the method cannot reach that ratio, or the run crashed)",
    "Average: mean over datasets (std over seeds of the per-seed average); * = over fewer datasets "
    "(those with results), not comparable and not eligible for bold",
    "bold: best per column (after rounding)",
]


def resolve_datasets(df: pd.DataFrame, datasets: Sequence[str] | None = None) -> list[str]:
    """The given order, or every dataset in the runs, sorted."""
    return list(datasets) if datasets else sorted(df["dataset"].dropna().unique())


def row_keys(df: pd.DataFrame) -> list[str]:
    """A table row is a (method, ratio); with several backbones, (backbone, method, ratio)."""
    return (["backbone"] if df["backbone"].nunique() > 1 else []) + ["method", "ratio_tag"]


def main_methods(df: pd.DataFrame, variants: Sequence[str] = tuple(SHPEFT_VARIANTS)) -> pd.DataFrame:
    """Runs for the main table and figure: without the SH-PEFT ablation-only variants."""
    return df[~df["method"].isin(set(variants) - {SHPEFT})]


def _cell_stats(runs: pd.DataFrame, values: pd.Series) -> dict:
    """Mean/std (percent) of one (row, dataset) cell and its state."""
    n_ok, n_runs = len(values), len(runs)
    if n_ok:
        state = "ok" if n_ok == n_runs else "partial"
    elif not n_runs:
        state = "missing"
    else:
        state = next((s for s in ("unreachable", "failed", "corrupt") if runs["status"].eq(s).any()), "no metric")
    return {"mean": values.mean() * 100, "std": values.std() * 100, "n_ok": n_ok, "n_runs": n_runs, "state": state}


def _average_stats(ok: pd.DataFrame, cells: list[dict], col: str) -> dict:
    """Mean of the dataset means; std over seeds that have results on all included datasets."""
    included = [c["dataset"] for c in cells if c["n_ok"]]
    if not included:
        return {"dataset": AVERAGE, "mean": np.nan, "std": np.nan, "n_ok": 0, "n_runs": len(cells), "state": "missing"}
    per_seed = (ok[ok["dataset"].isin(included)]
                .pivot_table(index="seed", columns="dataset", values=col, aggfunc="mean").dropna().mean(axis=1))
    return {"dataset": AVERAGE, "mean": float(np.mean([c["mean"] for c in cells if c["n_ok"]])),
            "std": per_seed.std() * 100, "n_ok": len(included), "n_runs": len(cells),
            "state": "ok" if len(included) == len(cells) else "incomplete"}


def _sort_key(key: dict, order: Sequence[str]) -> tuple:
    rank = order.index(key["method"]) if key["method"] in order else len(order)
    ratio = np.inf if key["ratio_tag"] == "native" else float(key["ratio_tag"])
    return str(key.get("backbone", "")), rank, key["method"], ratio


def _label(key: dict, tags: set[str]) -> str:
    """'lora (r=1e-4)'; 'full' when the method only has its native size."""
    if key["ratio_tag"] == "native":
        return key["method"] if tags == {"native"} else f"{key['method']} (native)"
    return f"{key['method']} (r={fmt_ratio(key['ratio_tag'])})"


def _best(long: pd.DataFrame) -> pd.Series:
    """True where the displayed value is the column's best (complete averages only)."""
    eligible = long["n_ok"].gt(0) & long["state"].ne("incomplete")
    shown = long["mean"].map(lambda v: float(f"{v:.1f}")).where(eligible)
    return shown.eq(shown.groupby(long["dataset"]).transform("max"))


def summarize(df: pd.DataFrame, metric: str = "macro_f1", datasets: Sequence[str] | None = None,
              order: Sequence[str] = METHOD_ORDER) -> pd.DataFrame:
    """Long form: one record per table row x (dataset | Average): mean, std (percent, over seeds),
    n_ok, n_runs, state, best; plus the row's label and trainable_pct (mean achieved ratio x 100)."""
    datasets = resolve_datasets(df, datasets)
    keys, col = row_keys(df), f"test.{metric}"
    runs = df[df["dataset"].isin(datasets)].dropna(subset=["method"])
    runs = runs if col in runs.columns else runs.assign(**{col: np.nan})  # a metric no run recorded
    groups = {k: g for k, g in runs.groupby(keys)}
    tags = runs.groupby("method")["ratio_tag"].agg(set).to_dict()
    records = []
    for k in sorted(groups, key=lambda k: _sort_key(dict(zip(keys, k)), order)):
        key, rows = dict(zip(keys, k)), groups[k]
        ok = rows[rows["status"].eq("ok") & rows[col].notna()]
        head = {**key, "label": _label(key, tags[key["method"]]),
                "trainable_pct": ok["budget.achieved_ratio"].mean() * 100}
        cells = [{"dataset": d, **_cell_stats(rows[rows["dataset"] == d], ok.loc[ok["dataset"] == d, col])}
                 for d in datasets]
        records += [{**head, **c} for c in [*cells, _average_stats(ok, cells, col)]]
    long = pd.DataFrame(records, columns=[*keys, "label", "trainable_pct", "dataset", "mean", "std",
                                          "n_ok", "n_runs", "state"])
    long["best"] = _best(long)
    return long


def cell_text(rec: pd.Series | dict) -> str:
    """'83.1 ± 0.4', '80.2 ± 1.0 (2/3)', '81.5*' or the state ('failed', ...)."""
    if not rec["n_ok"]:
        return STATE_TEXT.get(rec["state"], rec["state"])
    text = f"{rec['mean']:.1f}" + ("" if np.isnan(rec["std"]) else f" ± {rec['std']:.1f}")
    if rec["state"] == "partial":
        text += f" ({rec['n_ok']:g}/{rec['n_runs']:g})"
    return text + ("*" if rec["state"] == "incomplete" else "")


def wide(long: pd.DataFrame) -> pd.DataFrame:
    """One row per table row; '<dataset>_mean' / '<dataset>_std' columns (percent)."""
    index = [c for c in long.columns if c not in ("dataset", "mean", "std", "n_ok", "n_runs", "state", "best")]
    keys = [c for c in ("backbone", "method", "ratio_tag") if c in long.columns]
    rows = []
    for _, g in long.groupby(keys, sort=False):
        row = g.iloc[0][index].to_dict()
        for rec in g.itertuples():
            row |= {f"{rec.dataset}_mean": rec.mean, f"{rec.dataset}_std": rec.std}
        rows.append(row)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=index)


def grid(long: pd.DataFrame, index: dict[str, Callable[[pd.Series], str]], caption: str,
         notes: Sequence[str] = CELL_NOTES) -> Table:
    """Rows of ``long`` x (datasets..., Average) as a Table; ``index`` gives the label columns."""
    index = ({"Backbone": lambda r: str(r["backbone"])} if "backbone" in long.columns else {}) | index
    columns = list(dict.fromkeys(long["dataset"]))
    keys = [c for c in ("backbone", "method", "ratio_tag") if c in long.columns]
    rows = []
    for _, g in long.groupby(keys, sort=False):
        first = g.iloc[0]
        cells = {r["dataset"]: Cell(cell_text(r), bool(r["best"])) for _, r in g.iterrows()}
        rows.append([Cell(f(first)) for f in index.values()] + [cells[c] for c in columns])
    return Table([*index, *columns], rows, caption, list(notes), n_index=len(index))


def main_table(df: pd.DataFrame, metric: str = "macro_f1",
               datasets: Sequence[str] | None = None) -> tuple[pd.DataFrame, Table]:
    """Methods x datasets (+ Average) in the paper's layout, with each row's trainable %."""
    long = summarize(df, metric, datasets)
    index = {"Method": lambda r: r["label"], "Trainable": lambda r: fmt_percent(r["trainable_pct"] / 100)}
    caption = (f"Test {METRICS.get(metric, metric)} (%) per dataset. Trainable: mean achieved ratio of "
               "trainable backbone weights (head excluded).")
    return long, grid(long, index, caption)


def ablation_table(df: pd.DataFrame, metric: str = "macro_f1", datasets: Sequence[str] | None = None,
                   variants: dict[str, tuple[str, str]] = SHPEFT_VARIANTS,
                   ratio: float = PAPER_RATIO) -> tuple[pd.DataFrame, Table]:
    """SH-PEFT ablation: importance kind x estimator rows, one ratio per variant."""
    runs = one_ratio_per_method(df[df["method"].isin(list(variants))], ratio)
    long = summarize(runs, metric, datasets, order=list(variants))
    index = {"Importance": lambda r: variants[r["method"]][0], "Estimator": lambda r: variants[r["method"]][1],
             "Ratio": lambda r: fmt_ratio(r["ratio_tag"])}
    caption = f"SH-PEFT ablation: test {METRICS.get(metric, metric)} (%) per importance kind and estimator."
    return long, grid(long, index, caption)


def paper_comparison(df: pd.DataFrame, reference: pd.DataFrame | None = None,
                     statuses: dict[str, str] | None = None, method: str = SHPEFT,
                     ratio: float = PAPER_RATIO) -> tuple[pd.DataFrame, Table]:
    """Our mean beside the paper's reported value; difference = ours - paper (percentage points)."""
    reference = load_reference() if reference is None else reference
    statuses = dataset_statuses(statuses)
    runs = one_ratio_per_method(df[df["method"] == method], ratio)
    parts = []
    for metric, ref in reference[reference["method"] == method].groupby("metric", sort=False):
        datasets = list(dict.fromkeys([*ref["dataset"], *sorted(runs["dataset"].dropna().unique())]))
        ours = summarize(runs, metric, datasets)
        ours = ours[ours["dataset"] != AVERAGE].drop(columns=["label", "trainable_pct", "best"])
        part = ref[["dataset", "value"]].rename(columns={"value": "paper"}).merge(ours, on="dataset", how="outer")
        part["dataset"] = pd.Categorical(part["dataset"], datasets, ordered=True)
        parts.append(part.sort_values("dataset", kind="stable").assign(metric=metric))
    columns = ["metric", "dataset", "paper", "mean", "std", "n_ok", "n_runs", "state", "ratio_tag"]
    comp = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    comp = comp.astype({"dataset": str}).fillna({"n_ok": 0, "n_runs": 0, "state": "missing"})
    comp = comp.astype({"n_ok": int, "n_runs": int})
    comp = comp.rename(columns={"mean": "ours_mean", "std": "ours_std"}).assign(
        status=lambda c: c["dataset"].map(lambda d: statuses.get(d, "unknown")),
        difference=lambda c: c["ours_mean"] - c["paper"])
    comp = comp[["metric", "dataset", "status", "paper", "ours_mean", "ours_std", "difference", "ratio_tag",
                 "n_ok", "n_runs", "state", *(["backbone"] if "backbone" in comp.columns else [])]]
    rows = [[Cell(METRICS.get(r["metric"], r["metric"])), Cell(r["dataset"]), Cell(r["status"]),
             Cell("not reported" if pd.isna(r["paper"]) else f"{r['paper']:.1f}"),
             Cell(cell_text(r.rename({"ours_mean": "mean", "ours_std": "std"}))),
             Cell(fmt_ratio(r["ratio_tag"]) if isinstance(r["ratio_tag"], str) else "—"),
             Cell("—" if pd.isna(r["difference"]) else f"{r['difference']:+.1f}")]
            for _, r in comp.iterrows()]
    caption = (f"{method} vs the paper's reported numbers (%); difference = ours − paper, in percentage points. "
               "Status: the dataset's relation to the paper (confirmed / likely / stand-in).")
    header = ["Metric", "Dataset", "Status", "Paper", "Ours", "Ratio", "Ours − paper"]
    return comp, Table(header, rows, caption, [CELL_NOTES[0], CELL_NOTES[1]], n_index=3)


def _write(stem: Path, table: Table, csvs: dict[str, pd.DataFrame]) -> list[Path]:
    paths = [stem.with_name(stem.name + suffix) for suffix in (*csvs, ".md", ".tex")]
    for path, frame in zip(paths, csvs.values()):
        frame.to_csv(path, index=False)
    paths[-2].write_text(to_markdown(table))
    paths[-1].write_text(to_latex(table))
    return paths


def write_tables(df: pd.DataFrame, outdir: str | Path, *, datasets: Sequence[str] | None = None,
                 ratio: float | None = None, metrics: Sequence[str] = tuple(METRICS),
                 reference: pd.DataFrame | None = None, statuses: dict[str, str] | None = None,
                 variants: dict[str, tuple[str, str]] = SHPEFT_VARIANTS,
                 paper_ratio: float = PAPER_RATIO) -> list[Path]:
    """Write every table as CSV (wide + long), Markdown and LaTeX, and runs.csv; return the paths.
    ``ratio``: keep one ratio per method in the main table (see one_ratio_per_method)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    datasets = resolve_datasets(df, datasets)
    main = main_methods(df, list(variants))
    main = main if ratio is None else one_ratio_per_method(main, ratio)
    written = []
    for metric in metrics:
        long, table = main_table(main, metric, datasets)
        written += _write(outdir / f"main_{metric}", table, {".csv": wide(long), "_long.csv": long})
        if df["method"].isin(list(variants)).any():
            long, table = ablation_table(df, metric, datasets, variants, paper_ratio)
            written += _write(outdir / f"ablation_{metric}", table, {".csv": wide(long), "_long.csv": long})
    comp, table = paper_comparison(df, reference, statuses, ratio=paper_ratio)
    written += _write(outdir / "paper_comparison", table, {".csv": comp})
    df.to_csv(outdir / "runs.csv", index=False)
    return [*written, outdir / "runs.csv"]
