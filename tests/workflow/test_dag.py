"""The Snakemake DAG: the paper grid expands as configured, configs are validated, the smoke
grid covers every method, and an offline data rule fails fast with the runner's message."""
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import baselines

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(*args, cwd=REPO, timeout=180):
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def load(name):
    return yaml.safe_load((REPO / "workflow" / "config" / f"{name}.yaml").read_text())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A copy of the workflow files in a fresh folder: no data, no results (a fresh clone)."""
    root = tmp_path_factory.mktemp("clone")
    shutil.copy(REPO / "Snakefile", root)
    shutil.copytree(REPO / "workflow", root / "workflow")
    return root


def test_dry_run_of_all_lists_the_full_paper_grid(work):
    proc = snakemake("-n", "--cores", "8", "all", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    paper = load("paper")
    cells = len(paper["datasets"]) * sum(len(r) for r in paper["methods"].values()) * len(paper["seeds"])
    counts = job_counts(proc.stdout)
    assert counts["cell"] == cells == 6 * 30 * 3
    assert counts["prepare_data"] == 6 and counts["finetune_for_sparsity"] == 6
    assert counts["aggregate_tables"] == counts["draw_figures"] == counts["write_report"] == 1


def test_a_configfile_runs_exactly_its_own_grid(work):
    """--configfile replaces the paper grid (no merge of the two files' methods)."""
    proc = snakemake("-n", "--cores", "8", "all", "--configfile", "workflow/config/medmnist.yaml", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    medmnist = load("medmnist")
    cells = len(medmnist["datasets"]) * sum(len(r) for r in medmnist["methods"].values()) * len(medmnist["seeds"])
    assert job_counts(proc.stdout)["cell"] == cells == 252


@pytest.mark.parametrize("change, message", [
    ({"methods": {"no-such-method": [0.1]}}, "unknown PEFT method 'no-such-method'; registered methods:"),
    ({"datasets": ["no-such-data"]}, "unknown dataset 'no-such-data'"),
])
def test_unknown_names_fail_when_the_dag_is_parsed(work, tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(load("smoke") | change))
    proc = snakemake("--cores", "1", "all", "--configfile", str(path), cwd=work)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr
    assert not (work / "data").exists()  # nothing ran


def test_smoke_grid_covers_every_registered_method(work):
    smoke = load("smoke")
    assert set(smoke["methods"]) >= set(baselines.names()) - {"shpeft-taylor", "shpeft-layerwise"}
    proc = snakemake("-n", "--cores", "2", "smoke", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout)["cell"] == len(smoke["datasets"]) * sum(len(r) for r in smoke["methods"].values())


def test_invalid_config_is_rejected_by_the_schema(work, tmp_path):
    bad = load("smoke") | {"methods": {"shpeft": [1.5]}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = snakemake("-n", "--cores", "1", "all", "--configfile", str(path), cwd=work)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "On instance['methods']['shpeft'][0]" in out and "1.5" in out


def test_offline_data_rule_fails_fast_with_the_actionable_message(work, tmp_path):
    start = time.perf_counter()
    proc = snakemake("--cores", "1", "data/covid_ct/224/READY", cwd=work, timeout=120)
    assert proc.returncode != 0
    assert time.perf_counter() - start < 60
    out = proc.stdout + proc.stderr
    assert "CT_COVID.zip" in out and "covid_ct/raw/Images-processed/CT_COVID.zip" in out


def test_lint_is_clean(work):
    proc = snakemake("--lint", cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:]
