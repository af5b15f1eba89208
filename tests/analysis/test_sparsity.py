"""analysis.sparsity draws benchmark.sparsity's CSVs (hand-written here: no model, no torch)."""
import subprocess
import sys

import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.sparsity import write_sparsity_figures

DATASETS = ["a", "b"]


@pytest.fixture
def csvs(tmp_path):
    """The three CSVs in benchmark.sparsity's columns."""
    rows = [{"dataset": d, "fraction": p, "k": round(p * 1000), "n_eligible": 1000, "share": min(1.0, 5 * p)}
            for d in DATASETS for p in (1e-3, 1e-2, 1e-1, 1.0)]
    pd.DataFrame(rows).to_csv(tmp_path / "concentration.csv", index=False)
    rows = [{"dataset": d, "setting": setting, "keep_fraction": p, "k": round(p * 1000), "n_eligible": 1000,
             "delta_share": p, "macro_f1": 0.5 + p / 4, "accuracy": 0.6 + p / 4, "non_eligible": "fine-tuned (x)"}
            for d in DATASETS
            for setting, p in (("reverted", 0.0), ("top-p", 1e-2), ("top-p", 1e-1), ("fine-tuned", 1.0))]
    pd.DataFrame(rows).to_csv(tmp_path / "keep_top.csv", index=False)
    sets = [*DATASETS, "task-agnostic |w|"]
    rows = [{"set_a": x, "set_b": y, "overlap": 1.0 if x == y else 0.2, "k": 10, "n_eligible": 1000, "ratio": 0.01,
             "random_expected": 0.01} for x in sets for y in sets]
    pd.DataFrame(rows).to_csv(tmp_path / "overlap.csv", index=False)
    return tmp_path


def test_one_png_and_pdf_per_csv(csvs, tmp_path):
    paths = write_sparsity_figures(csvs, tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted(f"{s}.{e}" for s in ("concentration", "keep_top", "overlap")
                                                   for e in ("png", "pdf"))
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF")


def test_a_missing_csv_is_named(csvs):
    (csvs / "overlap.csv").unlink()
    with pytest.raises(FileNotFoundError, match="overlap.csv"):
        write_sparsity_figures(csvs)


def test_cli_draws_next_to_the_csvs(csvs, capsys):
    main(["sparsity", "--in", str(csvs)])
    assert (csvs / "keep_top.pdf").exists() and "keep_top.png" in capsys.readouterr().out


def test_analysis_imports_no_model_code():
    code = ("import sys, analysis.__main__, analysis.stats, analysis.tuning; "
            "print(sorted(m for m in ('torch', 'timm', 'shpeft', 'baselines', 'benchmark.run', 'benchmark.data') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
