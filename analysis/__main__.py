"""Command line: ``python -m analysis {tables,figures,sparsity,report} ...`` (see --help)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from analysis.figures import write_figures
from analysis.report import write_report
from analysis.results import load_runs
from analysis.sparsity import write_sparsity_figures
from analysis.tables import write_tables

STATUSES_HELP = "YAML/JSON file mapping dataset -> status (confirmed / likely / stand-in), e.g. the registry's"


def _runs(args: argparse.Namespace) -> pd.DataFrame:
    """Load the runs, keep one backbone if asked, and report corrupt files on stderr."""
    df = load_runs(args.runs)
    if args.backbone:
        df = df[df["backbone"] == args.backbone]
    for row in df[df["status"] == "corrupt"].itertuples():
        print(f"warning: corrupt result {row.path}: {row.error}", file=sys.stderr)
    return df


def _statuses(path: str | None) -> dict[str, str] | None:
    return yaml.safe_load(Path(path).read_text()) if path else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis", description="Tables, figures and the report "
                                "from result JSONs (results/runs/<dataset>/<backbone>/<method>/r<ratio>/s<seed>.json).")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--datasets", nargs="+", help="dataset columns, in this order (default: all, sorted)")
    common.add_argument("--order", nargs="+", default=(), metavar="METHOD",
                        help="row / legend order of the methods, e.g. the study config's (default: sorted)")
    for name, text, out in (("tables", "main, paper-comparison and ablation tables (CSV, Markdown, LaTeX)",
                             "results/tables"),
                            ("figures", "ratio-vs-F1 figures (PNG + PDF)", "results/figures")):
        s = sub.add_parser(name, parents=[common], help=text, description=text)
        s.add_argument("--runs", default="results/runs", help="a results directory or one JSON file")
        s.add_argument("--out", default=out, help="output directory (default: %(default)s)")
        s.add_argument("--backbone", help="keep only this backbone's runs")
        if name == "tables":
            s.add_argument("--statuses", help=STATUSES_HELP)
            s.add_argument("--ratio", type=float, help="main table: one ratio per method (closest / native)")
            s.add_argument("--paper-ratio", type=float,
                           help="ratio of the paper comparison and ablation tables (default: the one the "
                                "ablation variants ran at, else the paper method's native size)")
        else:
            s.add_argument("--metric", default="macro_f1", help="test metric on the y axis (default: %(default)s)")
    text = "sparsity / hybridity figures (PNG + PDF) from the CSVs of python -m benchmark.sparsity"
    s = sub.add_parser("sparsity", help=text, description=text)
    s.add_argument("--in", dest="indir", default="results/sparsity", help="folder of the CSVs (default: %(default)s)")
    s.add_argument("--out", help="output directory (default: the --in folder)")
    r = sub.add_parser("report", parents=[common], help="assemble <results>/report.md",
                       description="Assemble <results>/report.md from <results>/{runs,tables,figures,sparsity}.")
    r.add_argument("--results", default="results", help="results directory (default: %(default)s)")
    r.add_argument("--statuses", help=STATUSES_HELP)
    r.add_argument("--rebuild", action="store_true", help="regenerate tables and figures even if present")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "tables":
        paths = write_tables(_runs(args), args.out, datasets=args.datasets, ratio=args.ratio,
                             statuses=_statuses(args.statuses), paper_ratio=args.paper_ratio, order=args.order)
    elif args.command == "sparsity":
        paths = write_sparsity_figures(args.indir, args.out)
    elif args.command == "figures":
        paths = write_figures(_runs(args), args.out, metric=args.metric, datasets=args.datasets, order=args.order)
    else:
        paths = [write_report(args.results, rebuild=args.rebuild, datasets=args.datasets,
                              statuses=_statuses(args.statuses), order=args.order)]
    print("\n".join(map(str, paths)))


if __name__ == "__main__":
    main()
