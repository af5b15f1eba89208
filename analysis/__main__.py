"""Command line: ``python -m analysis {tables,figures,sparsity,report} ...`` (see --help).

Every input is checked before anything is read or written: a missing results folder, runs file or
statuses file is one ``error:`` line and exit status 2 (``--debug``: the traceback). The plotting
and table modules are imported only once the arguments are good.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from benchmark.cli import (
    ArgumentParser, UsageError, add_debug, existing_file, existing_folder, existing_path, folder_path, guarded,
    one_line, ratio,
)

if TYPE_CHECKING:
    import pandas as pd

STUDY_HELP = ("the study config the runs belong to (written by the DAG as <output>/study.yaml): its lr grid "
              "and extension rule, its declared claims (tables), its protocol deviations")
STATUSES_HELP = "YAML/JSON file mapping dataset -> status (confirmed / likely / stand-in), e.g. the registry's"


def _runs(args: argparse.Namespace) -> pd.DataFrame:
    """Load the runs, keep one backbone if asked, and report corrupt files on stderr."""
    from analysis.results import load_runs

    df = load_runs(args.runs)
    if args.backbone:
        df = df[df["backbone"] == args.backbone]
    for row in df[df["status"] == "corrupt"].itertuples():
        print(f"warning: corrupt result {row.path}: {row.error}", file=sys.stderr)
    return df


def _statuses(path: Path | None) -> dict[str, str] | None:
    """The ``--statuses`` file: a mapping dataset -> status (None without one)."""
    if path is None:
        return None
    try:
        statuses = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UsageError(f"--statuses: {path} is not YAML or JSON ({one_line(err)})") from None
    if not isinstance(statuses, dict):
        raise UsageError(f"--statuses: {path} holds a {type(statuses).__name__}; expected a mapping dataset -> status")
    return statuses


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m analysis", description="Tables, figures and the report "
                                "from result JSONs (results/runs/<dataset>/<backbone>/<method>/r<ratio>/s<seed>.json).")
    sub = p.add_subparsers(dest="command", required=True)
    common = ArgumentParser(add_help=False)
    add_debug(common)
    common.add_argument("--datasets", nargs="+", help="dataset columns, in this order (default: all, sorted)")
    common.add_argument("--order", nargs="+", default=(), metavar="METHOD",
                        help="row / legend order of the methods, e.g. the study config's (default: sorted)")
    for name, text, out in (("tables", "main, paper-comparison and ablation tables (CSV, Markdown, LaTeX)",
                             "results/tables"),
                            ("figures", "ratio-vs-F1 figures (PNG + PDF)", "results/figures")):
        s = sub.add_parser(name, parents=[common], help=text, description=text)
        s.add_argument("--runs", type=existing_path, default="results/runs",
                       help="a results directory or one JSON file")
        s.add_argument("--out", type=folder_path, default=out, help="output directory (default: %(default)s)")
        s.add_argument("--backbone", help="keep only this backbone's runs")
        s.add_argument("--study", type=existing_file, help=STUDY_HELP)
        if name == "tables":
            s.add_argument("--sparsity", type=existing_folder,
                           help="folder of python -m benchmark.sparsity's CSVs (the sparsity and hybridity claims)")
            s.add_argument("--benchmarks", type=folder_path,
                           help="folder of Snakemake's per-cell benchmark files: the cost table (skipped if absent)")
            s.add_argument("--statuses", type=existing_file, help=STATUSES_HELP)
            s.add_argument("--ratio", type=ratio, help="main table: one ratio per method (closest / native)")
            s.add_argument("--paper-ratio", type=ratio,
                           help="ratio of the paper comparison and ablation tables (default: the one the "
                                "ablation variants ran at, else the paper method's native size)")
        else:
            s.add_argument("--metric", default="macro_f1", help="test metric on the y axis (default: %(default)s)")
    text = "sparsity / hybridity figures (PNG + PDF) from the CSVs of python -m benchmark.sparsity"
    s = sub.add_parser("sparsity", help=text, description=text)
    add_debug(s)
    s.add_argument("--in", dest="indir", type=existing_folder, default="results/sparsity",
                   help="folder of the CSVs (default: %(default)s)")
    s.add_argument("--out", type=folder_path, help="output directory (default: the --in folder)")
    r = sub.add_parser("report", parents=[common], help="assemble <results>/report.md",
                       description="Assemble <results>/report.md from <results>/{runs,tables,figures,sparsity}.")
    r.add_argument("--results", type=existing_folder, default="results",
                   help="results directory (default: %(default)s)")
    r.add_argument("--statuses", type=existing_file, help=STATUSES_HELP)
    r.add_argument("--rebuild", action="store_true", help="regenerate tables and figures even if present")
    return p


def _study(path: Path | None) -> dict | None:
    """The ``--study`` file (None without one)."""
    from benchmark.study import read_yaml

    return read_yaml(path) if path else None


def _tables(args: argparse.Namespace) -> list[Path]:
    statuses, study = _statuses(args.statuses), _study(args.study)  # checked before the heavy imports
    from analysis.tables import write_tables

    return write_tables(_runs(args), args.out, datasets=args.datasets, ratio=args.ratio, statuses=statuses,
                        paper_ratio=args.paper_ratio, order=args.order, study=study, sparsity=args.sparsity,
                        benchmarks=args.benchmarks)


def _figures(args: argparse.Namespace) -> list[Path]:
    study = _study(args.study)
    from analysis.figures import write_figures

    return write_figures(_runs(args), args.out, metric=args.metric, datasets=args.datasets, order=args.order,
                         study=study)


def _sparsity(args: argparse.Namespace) -> list[Path]:
    from analysis.sparsity import write_sparsity_figures

    return write_sparsity_figures(args.indir, args.out)


def _report(args: argparse.Namespace) -> list[Path]:
    statuses = _statuses(args.statuses)  # checked before the heavy imports
    from analysis.report import write_report

    return [write_report(args.results, rebuild=args.rebuild, datasets=args.datasets, statuses=statuses,
                         order=args.order)]


COMMANDS = {"tables": _tables, "figures": _figures, "sparsity": _sparsity, "report": _report}


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    paths = guarded(lambda: COMMANDS[args.command](args), (FileNotFoundError,), debug=args.debug)
    print("\n".join(map(str, paths)))


if __name__ == "__main__":
    main()
