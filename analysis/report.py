"""Assemble ``<results>/report.md``: run counts and study coverage, tables, figures, sparsity analysis, provenance."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.diagnosis import CHANCE_MARGIN, below_probe, below_probe_table, near_chance, near_chance_table
from analysis.figures import write_figures
from analysis.render import Cell, Table, to_markdown
from analysis.results import load_runs
from analysis.tables import TABLE_ORDER, write_tables
from analysis.tuning import select_lr
from analysis.claims import CLAIMS
from analysis.coverage import COVERAGE
from benchmark.paths import STUDY_RECORD
from benchmark.study import read_yaml

STATUS_ORDER = ("ok", "failed", "unreachable", "corrupt")
MAX_PROBLEMS = 50  # runs listed individually in "Runs that did not finish"


def _link(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _statuses(df: pd.DataFrame) -> list[str]:
    seen = set(df["status"].fillna("unknown"))
    return [s for s in STATUS_ORDER if s in seen] + sorted(seen - set(STATUS_ORDER))


def run_summary(df: pd.DataFrame) -> list[str]:
    """A line with the counts per status and a method x status table."""
    counts = df["status"].fillna("unknown").value_counts()
    shown = dict.fromkeys([*STATUS_ORDER[:3], *_statuses(df)])  # ok / failed / unreachable even when 0
    line = f"{len(df)} result files: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in shown)
    if df.empty:
        return [line]
    table = pd.crosstab(df["method"].fillna("(unknown)"), df["status"].fillna("unknown"))
    table = table.reindex(columns=_statuses(df), fill_value=0)
    rows = [[Cell(str(m)), *(Cell(str(v)) for v in r)] for m, r in table.iterrows()]
    return [line, "", to_markdown(Table(["method", *table.columns], rows, "Runs per method and status"))]


def _first_line(error: object, width: int = 160) -> str:
    return error.strip().splitlines()[0][:width] if isinstance(error, str) and error.strip() else ""


def problem_runs(df: pd.DataFrame, base: Path) -> list[str]:
    """Markdown table of the runs that did not finish ok, with their error (first line)."""
    bad = df[df["status"].ne("ok")]
    if bad.empty:
        return ["Every run finished ok."]
    rows = [[Cell(f"[{_link(Path(r['path']), base)}]({_link(Path(r['path']), base)})"), Cell(str(r["status"])),
             Cell(_first_line(r["error"]))] for _, r in bad.head(MAX_PROBLEMS).iterrows()]
    more = [f"... and {len(bad) - MAX_PROBLEMS} more (see tables/runs.csv)."] if len(bad) > MAX_PROBLEMS else []
    return [to_markdown(Table(["run", "status", "error"], rows, "Runs that did not finish ok", n_index=3)), *more]


def provenance_summary(df: pd.DataFrame) -> list[str]:
    """One bullet per provenance field: distinct values with their run counts; time range of starts."""
    lines = []
    for col in sorted(c for c in df.columns if c.startswith("provenance.")):
        values = df[col].dropna().astype(str)
        if values.empty:
            continue
        name = col.removeprefix("provenance.")
        if name == "started":
            lines.append(f"- started: {values.min()} … {values.max()}")
            continue
        counts = values.value_counts()
        lines.append(f"- {name}: " + ", ".join(f"`{v}` ({n})" for v, n in counts.items()))
    return lines or ["No provenance recorded."]


def _table_rank(path: Path) -> tuple:
    return (TABLE_ORDER.index(path.stem) if path.stem in TABLE_ORDER else len(TABLE_ORDER), path.stem)


def table_sections(tables_dir: Path, base: Path, skip: Sequence[str] = ()) -> list[str]:
    """Every Markdown table but ``skip``, in the paper's order, with links to its CSV / LaTeX files."""
    lines = []
    for md in sorted((p for p in tables_dir.glob("*.md") if p.stem not in skip), key=_table_rank):
        files = [f"[{p.name}]({_link(p, base)})" for p in sorted(tables_dir.glob(f"{md.stem}*"))
                 if p.suffix in (".csv", ".tex")]
        lines += [f"### {md.stem}", "", md.read_text().rstrip(), "", "Files: " + ", ".join(files), ""]
    stems = {md.stem for md in tables_dir.glob("*.md")}
    others = [f"[{p.name}]({_link(p, base)})" for p in sorted(tables_dir.glob("*.csv"))
              if not any(p.stem == s or p.stem.startswith(f"{s}_") for s in stems)]
    lines += ["Other files: " + ", ".join(others), ""] if others else []
    return lines or ["No tables."]


def image_sections(folder: Path, base: Path) -> list[str]:
    """Every PNG in ``folder`` as an image (with its PDF if present), every CSV as a link."""
    lines = []
    for png in sorted(folder.glob("*.png")):
        pdf = png.with_suffix(".pdf")
        lines += [f"![{png.stem}]({_link(png, base)})", ""]
        lines += [f"[{pdf.name}]({_link(pdf, base)})", ""] if pdf.exists() else []
    lines += [f"- [{csv.name}]({_link(csv, base)})" for csv in sorted(folder.glob("*.csv"))]
    return lines


def claims_section(tables_dir: Path, base: Path) -> list[str]:
    """The claims table (analysis.claims), first in the report, with links to every comparison."""
    table = tables_dir / f"{CLAIMS}.md"
    if not table.exists():
        return ["The study declares no claims (`claims:` in its config)."]
    files = [f"[{p.name}]({_link(p, base)})" for p in (tables_dir / f"{CLAIMS}.csv", tables_dir / "claim_tests.csv")]
    return [table.read_text().rstrip(), "", "Every comparison, with its confounds: " + ", ".join(files)]


def coverage_section(tables_dir: Path) -> list[str]:
    """Whether every cell the study declares ran (analysis.coverage), under the run counts."""
    table = tables_dir / f"{COVERAGE}.md"
    return [table.read_text().rstrip()] if table.exists() else []


def near_chance_section(df: pd.DataFrame, reported: pd.DataFrame | None) -> list[str]:
    """Every finished run within CHANCE_MARGIN of chance, each with its loss history, a verdict, and whether
    the tables report it (``reported``: the runs at their chosen lr) or validation rejected its lr."""
    rows = near_chance(df, reported=None if reported is None else reported.index)
    if rows.empty:
        return [f"No finished run is within {CHANCE_MARGIN} of chance (test balanced accuracy)."]
    return [to_markdown(near_chance_table(rows))]


def below_probe_section(reported: pd.DataFrame | None) -> list[str]:
    """The reported cells (at their chosen lr) that score below the linear probe, each with its loss history
    and a verdict."""
    if reported is None:
        return ["No runs."]
    rows = below_probe(reported)
    if rows.empty:
        return ["Every reported method scores at or above the linear probe (mean test macro-F1), or no probe ran."]
    return [to_markdown(below_probe_table(rows))]


def write_report(results_dir: str | Path, *, runs_dir: str | Path | None = None, rebuild: bool = False,
                 datasets: Sequence[str] | None = None, statuses: dict[str, str] | None = None,
                 order: Sequence[str] = ()) -> Path:
    """Write ``<results>/report.md``, opening with the claims (tables / figures are generated first if missing
    or ``rebuild``, with the study of ``<results>/study.yaml`` when the DAG wrote one)."""
    results = Path(results_dir)
    runs = Path(runs_dir) if runs_dir else results / "runs"
    tables, figures, sparsity = results / "tables", results / "figures", results / "sparsity"
    study = read_yaml(results / STUDY_RECORD) if (results / STUDY_RECORD).exists() else None
    sweep = (study or {}).get("lr_sweep")
    df = load_runs(runs if runs.exists() else [])
    if rebuild or not tables.exists():
        write_tables(df, tables, datasets=datasets, statuses=statuses, order=order, study=study,
                     sparsity=sparsity if sparsity.exists() else None)
    if rebuild or not figures.exists():
        write_figures(df, figures, datasets=datasets, order=order, study=study)
    reported = None if df.empty else select_lr(df, sweep)[0]  # each cell at the lr validation chose
    lines = [
        "# shpeft-bench report", "",
        f"Results from `{_link(runs, results)}/`. Metrics are test-set percentages; "
        "see docs/architecture.md for the result schema.", "",
        "## The paper's claims", "", *claims_section(tables, results), "",
        "## Runs", "", *run_summary(df), "", *problem_runs(df, results), "", *coverage_section(tables), "",
        "## Tables", "", *table_sections(tables, results, skip=[CLAIMS, COVERAGE]), "",
        "## Methods below the linear probe", "", *below_probe_section(reported), "",
        f"## Runs within {CHANCE_MARGIN} of chance", "", *near_chance_section(df, reported), "",
        "## Figures", "", *(image_sections(figures, results) or ["No figures."]), "",
        "## Sparsity and hybridity analysis", "",
        *(image_sections(sparsity, results) or ["Not produced yet (expected in `sparsity/`)."]), "",
        "## Provenance", "", *provenance_summary(df), "",
    ]
    path = results / "report.md"
    path.write_text("\n".join(lines))
    return path
