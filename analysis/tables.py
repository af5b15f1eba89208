"""The paper's tables from a runs DataFrame (analysis.results.load_runs): main results,
comparison with the paper's reported numbers, SH-PEFT ablation, paired differences to SH-PEFT,
and the learning rates chosen on validation. Values in percent.

No method list is written here: the methods are the runs', their order is the caller's (the study
config's), the paper's method is the one ``paper_reference.yaml`` reports numbers for, and its
ablation variants are the methods named ``<paper method>-<variant>`` in the runs."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.claims import CLAIMS, assess, claims_markdown_table
from analysis.cost import cost_markdown_table, cost_table, read_benchmarks
from analysis.coverage import COVERAGE, coverage_markdown_table, coverage_table
from analysis.protocol import confounds, deviations, rows_of

from analysis.reference import dataset_statuses, load_reference, paper_method
from analysis.render import Cell, Table, fmt_percent, fmt_ratio, to_latex, to_markdown
from analysis.results import one_ratio_per_method
from analysis.stats import ALL_DATASETS, ci_half_width, paired_vs_reference
from analysis.tuning import select_lr
from benchmark.paths import parse_ratio_tag
from benchmark.values import NATIVE

AVERAGE = "Average"
COST = "cost"  # the file stem of the cost table
DEVIATION_MARK = "†"  # a row trained under other settings than the study's common budget
METRICS = {"macro_f1": "macro-F1", "accuracy": "accuracy"}
STATE_TEXT = {"unreachable": "n/a (unreachable)", "failed": "failed", "corrupt": "corrupt", "missing": "—"}
# Report order of the Markdown tables (file stems); others follow alphabetically.
TABLE_ORDER = (CLAIMS, "main_macro_f1", "main_accuracy", "paper_comparison", "ablation_macro_f1", "ablation_accuracy")
CELL_NOTES = [
    "mean ± std (sample std) over seeds [95% confidence interval of the mean, Student t]; (k/n): only k of "
    "the n runs finished ok; no interval with a single seed",
    "failed / n/a (unreachable) / corrupt: no finished run (the method cannot reach that ratio, or the run crashed)",
    "Average: mean over datasets (std and interval over seeds of the per-seed average); * = over fewer datasets "
    "(those with results), not comparable and not eligible for bold",
    "bold: best per column (after rounding)",
    "several learning rates: each cell shows the one with the best mean validation macro-F1 "
    "(selected_hparams.csv)",
]


def resolve_datasets(df: pd.DataFrame, datasets: Sequence[str] | None = None) -> list[str]:
    """The given order, or every dataset in the runs, sorted."""
    return list(datasets) if datasets else sorted(df["dataset"].dropna().unique())


def row_keys(df: pd.DataFrame) -> list[str]:
    """A table row is a (method, ratio); with several backbones, (backbone, method, ratio)."""
    return (["backbone"] if df["backbone"].nunique() > 1 else []) + ["method", "ratio_tag"]


def ablation_methods(df: pd.DataFrame, reference: str) -> list[str]:
    """The reference method and its variants in the runs (``<reference>-<variant>``), sorted."""
    methods = set(df["method"].dropna())
    return sorted(m for m in methods if m == reference or m.startswith(f"{reference}-"))


def _most_run_ratio(runs: pd.DataFrame) -> float | None:
    """The ratio with the most finished runs (ties: the smallest); None without finished runs."""
    counts = runs[runs["status"].eq("ok")].groupby("ratio_tag").size()
    if counts.empty:
        return None
    return parse_ratio_tag(min(counts.index, key=lambda t: (-counts[t], np.inf if t == NATIVE else float(t))))


def ablation_ratio(df: pd.DataFrame, reference: str) -> float | None:
    """The paper's setting as the runs show it: the ratio its variants were run at (most finished runs),
    else the reference method's native size if it ran there, else its most-run ratio (ties: smallest)."""
    variants = set(ablation_methods(df, reference)) - {reference}
    ratio = _most_run_ratio(df[df["method"].isin(variants)])
    own = df[df["method"] == reference]
    if ratio is None and own["ratio_tag"].eq(NATIVE).any():
        return None
    return ratio if ratio is not None else _most_run_ratio(own)


def main_methods(df: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Runs for the main table and figure: without the paper method's ablation-only variants."""
    reference = reference or paper_method()
    return df[~df["method"].isin(set(ablation_methods(df, reference)) - {reference})]


def _with_ci(stats: dict, n: int) -> dict:
    half = ci_half_width(stats["std"], n)
    return {**stats, "ci_low": stats["mean"] - half, "ci_high": stats["mean"] + half}


def _cell_stats(runs: pd.DataFrame, values: pd.Series) -> dict:
    """Mean/std/95% interval (percent) of one (row, dataset) cell and its state."""
    n_ok, n_runs = len(values), len(runs)
    if n_ok:
        state = "ok" if n_ok == n_runs else "partial"
    elif not n_runs:
        state = "missing"
    else:
        state = next((s for s in ("unreachable", "failed", "corrupt") if runs["status"].eq(s).any()), "no metric")
    return _with_ci({"mean": values.mean() * 100, "std": values.std() * 100, "n_ok": n_ok, "n_runs": n_runs,
                     "state": state}, n_ok)


def _average_stats(ok: pd.DataFrame, cells: list[dict], col: str) -> dict:
    """Mean of the dataset means; std and interval over the seeds that have results on all included datasets."""
    included = [c["dataset"] for c in cells if c["n_ok"]]
    if not included:
        return {"dataset": AVERAGE, "mean": np.nan, "std": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_ok": 0,
                "n_runs": len(cells), "state": "missing"}
    per_seed = (ok[ok["dataset"].isin(included)]
                .pivot_table(index="seed", columns="dataset", values=col, aggfunc="mean").dropna().mean(axis=1))
    return _with_ci({"dataset": AVERAGE, "mean": float(np.mean([c["mean"] for c in cells if c["n_ok"]])),
                     "std": per_seed.std() * 100, "n_ok": len(included), "n_runs": len(cells),
                     "state": "ok" if len(included) == len(cells) else "incomplete"}, len(per_seed))


def _sort_key(key: dict, order: Sequence[str]) -> tuple:
    rank = order.index(key["method"]) if key["method"] in order else len(order)
    ratio = np.inf if key["ratio_tag"] == NATIVE else float(key["ratio_tag"])
    return str(key.get("backbone", "")), rank, key["method"], ratio


def _label(key: dict, tags: set[str]) -> str:
    """'lora (r=1e-4)'; 'full' when the method only has its native size."""
    if key["ratio_tag"] == NATIVE:
        return key["method"] if tags == {NATIVE} else f"{key['method']} ({NATIVE})"
    return f"{key['method']} (r={fmt_ratio(key['ratio_tag'])})"


def _best(long: pd.DataFrame) -> pd.Series:
    """True where the displayed value is the column's best (complete averages only)."""
    eligible = long["n_ok"].gt(0) & long["state"].ne("incomplete")
    shown = long["mean"].map(lambda v: float(f"{v:.1f}")).where(eligible)
    return shown.eq(shown.groupby(long["dataset"]).transform("max"))


def summarize(df: pd.DataFrame, metric: str = "macro_f1", datasets: Sequence[str] | None = None,
              order: Sequence[str] = ()) -> pd.DataFrame:
    """Long form: one record per table row x (dataset | Average): mean, std, ci_low, ci_high (percent,
    over seeds), n_ok, n_runs, state, best; plus the row's label and trainable_pct (mean achieved
    ratio x 100). Rows follow ``order`` (method names; others after it, alphabetically)."""
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
    long = pd.DataFrame(records, columns=[*keys, "label", "trainable_pct", "dataset", "mean", "std", "ci_low",
                                          "ci_high", "n_ok", "n_runs", "state"])
    long["best"] = _best(long)
    return long


def cell_text(rec: pd.Series | dict) -> str:
    """'83.1 ± 0.4 [82.1, 84.1]', '80.2 ± 1.0 [71.2, 89.2] (2/3)', '81.5*' or the state ('failed', ...)."""
    if not rec["n_ok"]:
        return STATE_TEXT.get(rec["state"], rec["state"])
    text = f"{rec['mean']:.1f}" + ("" if np.isnan(rec["std"]) else f" ± {rec['std']:.1f}")
    if not np.isnan(rec.get("ci_low", np.nan)):
        text += f" [{rec['ci_low']:.1f}, {rec['ci_high']:.1f}]"
    if rec["state"] == "partial":
        text += f" ({rec['n_ok']:g}/{rec['n_runs']:g})"
    return text + ("*" if rec["state"] == "incomplete" else "")


def wide(long: pd.DataFrame) -> pd.DataFrame:
    """One row per table row; '<dataset>_{mean,std,ci_low,ci_high}' columns (percent)."""
    values = ("mean", "std", "ci_low", "ci_high")
    index = [c for c in long.columns if c not in ("dataset", *values, "n_ok", "n_runs", "state", "best")]
    keys = [c for c in ("backbone", "method", "ratio_tag") if c in long.columns]
    rows = []
    for _, g in long.groupby(keys, sort=False):
        row = g.iloc[0][index].to_dict()
        for _, rec in g.iterrows():
            row |= {f"{rec['dataset']}_{v}": rec[v] for v in values}
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


def deviation_notes(df: pd.DataFrame) -> list[str]:
    """One note per method whose runs record a known departure from its reference code (``recipe.deviations``)."""
    if "recipe.deviations" not in df.columns:
        return []
    named = df.dropna(subset=["recipe.deviations"])
    named = named[named["recipe.deviations"].astype(str).str.len() > 0]
    return [f"{method}: {text}" for method, text in
            named.drop_duplicates("method").set_index("method")["recipe.deviations"].sort_index().items()]


def setting_notes(df: pd.DataFrame, study: Mapping[str, Any] | None = None) -> list[str]:
    """One note per method whose rows are a protocol deviation (analysis.protocol.deviations), e.g.
    ``vpt-deep: protocol deviation, not in the claims: epochs 12 (most runs: 6)``."""
    return [f"{DEVIATION_MARK} {method}: protocol deviation, not in the claims: {why}"
            for method, why in sorted(deviations(df, study).items())]


def main_table(df: pd.DataFrame, metric: str = "macro_f1", datasets: Sequence[str] | None = None,
               order: Sequence[str] = (), study: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, Table]:
    """Methods x datasets (+ Average) in the paper's layout, with each row's trainable %; the rows of a
    protocol deviation are marked."""
    long = summarize(df, metric, datasets, order)
    deviating = set(deviations(df, study))
    index = {"Method": lambda r: r["label"] + (f" {DEVIATION_MARK}" if r["method"] in deviating else ""),
             "Trainable": lambda r: fmt_percent(r["trainable_pct"] / 100)}
    caption = (f"Test {METRICS.get(metric, metric)} (%) per dataset. Trainable: mean achieved ratio of "
               "trainable backbone weights (head excluded).")
    return long, grid(long, index, caption, [*CELL_NOTES, *setting_notes(df, study), *deviation_notes(df)])


def ablation_table(df: pd.DataFrame, metric: str = "macro_f1", datasets: Sequence[str] | None = None,
                   reference: str | None = None, ratio: float | None = None,
                   order: Sequence[str] = ()) -> tuple[pd.DataFrame, Table]:
    """SH-PEFT ablation: the paper method and its variants (``ablation_methods``), one ratio per variant
    (``ratio``, default ``ablation_ratio``)."""
    reference = reference or paper_method()
    ratio = ablation_ratio(df, reference) if ratio is None else ratio
    runs = one_ratio_per_method(df[df["method"].isin(ablation_methods(df, reference))], ratio)
    long = summarize(runs, metric, datasets, order=order)
    index = {"Method": lambda r: r["method"], "Ratio": lambda r: fmt_ratio(r["ratio_tag"])}
    caption = (f"Ablation of {reference}: test {METRICS.get(metric, metric)} (%) of each "
               "importance / estimator variant.")
    return long, grid(long, index, caption)


def paper_comparison(df: pd.DataFrame, reference: pd.DataFrame | None = None,
                     statuses: dict[str, str] | None = None, ratio: float | None = None) -> tuple[pd.DataFrame, Table]:
    """Our mean beside the paper's reported value; difference = ours - paper (percentage points).
    ``ratio``: ours at this ratio (default: the ablation's, ``ablation_ratio``)."""
    reference = load_reference() if reference is None else reference
    method = paper_method(reference)
    statuses = dataset_statuses(statuses)
    ratio = ablation_ratio(df, method) if ratio is None else ratio
    runs = one_ratio_per_method(df[df["method"] == method], ratio)
    parts = []
    for metric, ref in reference[reference["method"] == method].groupby("metric", sort=False):
        datasets = list(dict.fromkeys([*ref["dataset"], *sorted(runs["dataset"].dropna().unique())]))
        ours = summarize(runs, metric, datasets)
        ours = ours[ours["dataset"] != AVERAGE].drop(columns=["label", "trainable_pct", "best"])
        part = ref[["dataset", "value"]].rename(columns={"value": "paper"}).merge(ours, on="dataset", how="outer")
        part["dataset"] = pd.Categorical(part["dataset"], datasets, ordered=True)
        parts.append(part.sort_values("dataset", kind="stable").assign(metric=metric))
    columns = ["metric", "dataset", "paper", "mean", "std", "ci_low", "ci_high", "n_ok", "n_runs", "state",
               "ratio_tag"]
    comp = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    comp = comp.astype({"dataset": str}).fillna({"n_ok": 0, "n_runs": 0, "state": "missing"})
    comp = comp.astype({"n_ok": int, "n_runs": int})
    comp = comp.rename(columns={"mean": "ours_mean", "std": "ours_std"}).assign(
        status=lambda c: c["dataset"].map(lambda d: statuses.get(d, "unknown")),
        difference=lambda c: c["ours_mean"] - c["paper"])
    comp = comp[["metric", "dataset", "status", "paper", "ours_mean", "ours_std", "ci_low", "ci_high", "difference",
                  "ratio_tag",
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


def _difference_text(rec: dict) -> str:
    """'+1.2 [-0.3, +2.7]' (no interval with one pair)."""
    text = f"{rec['mean_diff']:+.1f}"
    return text if np.isnan(rec["ci_low"]) else f"{text} [{rec['ci_low']:+.1f}, {rec['ci_high']:+.1f}]"


def paired_table(paired: pd.DataFrame, order: Sequence[str] = ()) -> Table:
    """The pooled (``All`` datasets) rows of ``paired_vs_reference`` as a table; the CSV has every dataset."""
    pooled = paired[paired["dataset"] == ALL_DATASETS].to_dict("records")
    tags = paired.groupby("method")["ratio_tag"].agg(set).to_dict()
    reference = paired["reference"].iloc[0] if len(paired) else "the reference"
    rows = [[Cell(_label(r, tags[r["method"]])),
             Cell(", ".join(fmt_ratio(t) for t in r["reference_ratio_tag"].split("; "))),
             Cell(str(r["n_pairs"])), Cell(_difference_text(r))]
            for r in sorted(pooled, key=lambda r: _sort_key(r, order))]
    caption = (f"Paired difference of test macro-F1 to {reference} (method − {reference}, percentage points) "
               "over every (dataset, seed) both finished: mean [95% confidence interval, Student t].")
    notes = [f"{reference} ratio: the same ratio, else its closest in log space (per dataset; the CSV has "
             "each dataset's row)"]
    return Table(["Method", f"{reference} ratio", "Pairs", "Difference"], rows, caption, notes, n_index=2)


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
                 paper_ratio: float | None = None, order: Sequence[str] = (),
                 study: Mapping[str, Any] | None = None, sparsity: str | Path | None = None,
                 benchmarks: str | Path | None = None) -> list[Path]:
    """Write every table (main, ablation, paper comparison, paired_vs_<paper method>) as CSV (wide + long),
    Markdown and LaTeX, the claims the ``study`` declares (claims.csv, claim_tests.csv; ``sparsity``: the
    folder of benchmark.sparsity's CSVs) and whether every cell it declares ran (coverage.csv|md), plus
    selected_hparams.csv and runs.csv (every run, ``lr_selected`` marking the reported ones), and cost.csv|md
    when the folder of Snakemake's per-cell ``benchmarks`` exists; return the paths. ``ratio``: keep one ratio
    per method in the main table (see one_ratio_per_method); ``paper_ratio``: the ratio of the comparison and
    ablation tables (default: ``ablation_ratio``)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    datasets = resolve_datasets(df, datasets)
    method = paper_method(reference)
    selected, choices = select_lr(df, (study or {}).get("lr_sweep"))
    main = main_methods(selected, method)
    main = main if ratio is None else one_ratio_per_method(main, ratio)
    written = []
    if (study or {}).get("claims"):
        written += write_claims(selected, choices, outdir, study, sparsity, order)
    if study:
        covered = coverage_table(selected, study)
        written += _write(outdir / COVERAGE, coverage_markdown_table(covered), {".csv": covered})
    for metric in metrics:
        long, table = main_table(main, metric, datasets, order, study)
        written += _write(outdir / f"main_{metric}", table, {".csv": wide(long), "_long.csv": long})
        if len(ablation_methods(selected, method)) > 1:
            long, table = ablation_table(selected, metric, datasets, method, paper_ratio, order)
            written += _write(outdir / f"ablation_{metric}", table, {".csv": wide(long), "_long.csv": long})
    comp, table = paper_comparison(selected, reference, statuses, ratio=paper_ratio)
    written += _write(outdir / "paper_comparison", table, {".csv": comp})
    paired = paired_vs_reference(selected, method).assign(
        confounds=lambda p: paired_confounds(p, selected, choices, deviations(selected, study)))
    written += _write(outdir / f"paired_vs_{method}", paired_table(paired, order), {".csv": paired})
    if benchmarks and Path(benchmarks).is_dir():
        cost = cost_table(df, read_benchmarks(benchmarks))
        written += _write(outdir / COST, cost_markdown_table(cost), {".csv": cost})
    frames = {"selected_hparams.csv": choices, "runs.csv": df.assign(lr_selected=df.index.isin(selected.index))}
    for name, frame in frames.items():
        frame.to_csv(outdir / name, index=False)
        written.append(outdir / name)
    return written


def paired_confounds(paired: pd.DataFrame, runs: pd.DataFrame, choices: pd.DataFrame,
                     deviating: Mapping[str, str]) -> list[str]:
    """analysis.protocol.confounds of each paired row: the method's runs against the reference's."""
    def pick(frame: pd.DataFrame, method: str, tags: str, dataset: str) -> pd.DataFrame:
        rows = rows_of(frame, method, tags.split("; "))
        return rows if dataset == ALL_DATASETS else rows[rows["dataset"] == dataset]

    return [confounds(pick(runs, r["method"], r["ratio_tag"], r["dataset"]),
                      pick(runs, r["reference"], r["reference_ratio_tag"], r["dataset"]),
                      pick(choices, r["method"], r["ratio_tag"], r["dataset"]),
                      pick(choices, r["reference"], r["reference_ratio_tag"], r["dataset"]), deviating)
            for _, r in paired.iterrows()]


def write_claims(selected: pd.DataFrame, choices: pd.DataFrame, outdir: Path, study: Mapping[str, Any],
                 sparsity: str | Path | None, order: Sequence[str]) -> list[Path]:
    """claims.csv|md (one row per claim) and claim_tests.csv (every comparison) of the study's declared claims."""
    declared = study["claims"]
    claims, tests = assess(declared, selected, choices, Path(sparsity) if sparsity else None, study, order)
    family = int((tests["status"] == "tested").sum())
    table = claims_markdown_table(claims, declared.get("alpha", 0.05), declared.get("power", 0.8), family)
    tests.to_csv(outdir / "claim_tests.csv", index=False)
    return [*_write(outdir / CLAIMS, table, {".csv": claims}), outdir / "claim_tests.csv"]
