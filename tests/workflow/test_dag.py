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
    assert counts["cell"] == cells == 6 * 37 * 3
    assert counts["prepare_data"] == 6 and counts["finetune_for_sparsity"] == 6 * 3  # every dataset and seed
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
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {path}: methods: shpeft: 0: 1.5 is greater than the maximum of 1"


def test_config_overlays_the_chosen_study_one_setting_at_a_time(work, tmp_path):
    """--config KEY=VALUE changes that setting of the study (the paper grid by default, or study_file=X):
    the grid stays whole."""
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    proc = snakemake("-n", "-p", "--cores", "8", "all", "--config", f"checkpoint={weights}", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout)["cell"] == 6 * 37 * 3 and f"--checkpoint {weights}" in proc.stdout
    proc = snakemake("-n", "--cores", "8", "all", "--config", "study_file=workflow/config/medmnist.yaml",
                     "data_root=elsewhere", cwd=work)
    assert job_counts(proc.stdout)["cell"] == 252 and "elsewhere/dermamnist/224/READY" in proc.stdout


@pytest.mark.parametrize("config, message", [
    ("study_file=no/such.yaml", "error: study file 'no/such.yaml': cannot read it (No such file or directory)"),
    ("study_file=BROKEN", "error: study file 'BROKEN', line 3, column 1: not valid YAML"),
    ("study_file=UNKNOWN", "error: smoke: method_train: unknown PEFT method 'nope'"),
    ("study_file=EPOCHS", "error: EPOCHS: train: epochs: 0 is less than the minimum of 1"),
    ("image_size=big", "error: workflow/config/paper.yaml: image_size: 'big' is not of type 'integer'"),
])
def test_a_bad_study_config_is_one_named_line_before_any_job(work, tmp_path, config, message):
    files = {"BROKEN": "study: x\nmethods: {lora: [0.1]\n", "UNKNOWN": yaml.safe_dump(load("smoke") | {"method_train": {"nope": {"epochs": 2}}}),
             "EPOCHS": yaml.safe_dump(load("smoke") | {"train": {"epochs": 0}})}
    name = config.partition("=")[2]
    if name in files:
        (tmp_path / name).write_text(files[name])
        config, message = config.replace(name, str(tmp_path / name)), message.replace(name, str(tmp_path / name))
    proc = snakemake("-n", "--cores", "1", "all", "--config", config, cwd=work)
    assert proc.returncode == 2 and proc.stderr.strip().startswith(message) and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


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
