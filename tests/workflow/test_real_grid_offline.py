"""The real `all` target end to end (not a dry run), offline: every real dataset name served in its exact
official format from a local mirror (COVID-CT zips + split lists, BUSI zip, a MedMNIST npz behind a
stand-in) or from local sources (Chaoyang json + images, brain MRI folders), plus a `folder:` dataset,
with an lr sweep, through to tables, figures, sparsity and the report; then the DAG is incremental."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.data.official_formats import write_official_mirror
from benchmark.data.synthetic import WRITERS, SynthConfig

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
REAL = ["covid_ct", "busi", "chaoyang", "brain_mri", "standin-derma"]


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    work = tmp_path_factory.mktemp("clone")
    shutil.copy(REPO / "Snakefile", work)
    shutil.copytree(REPO / "workflow", work / "workflow")
    sources = write_official_mirror(work / "mirror", medmnist_flags=("dermamnist",))
    folder = WRITERS["folder"](work / "my scans", SynthConfig(num_classes=3, n_train=12, n_val=4, n_test=4, size=16))
    study = {
        "study": "offline", "output": "results/offline", "data_root": "data", "backbone": "tiny_vit",
        "pretrained": True, "image_size": 16, "datasets": [*REAL, f"folder:{folder}"],
        "methods": {"linear": ["native"], "shpeft": [0.1]}, "seeds": [0, 1],
        "lr_sweep": {"seeds": [0], "lrs": {"linear": [0.01, 0.1]}, "extend": {"step": 3, "max": 1}},
        "train": {"epochs": 1, "batch_size": 16, "calib_images": 16, "lr_scale": 10.0},
        "sparsity": {"enabled": True, "keep_fractions": [0.1, 0.5]},
        "claims": {"tests": [
            {"id": "C1", "claim": "shpeft >= linear", "kind": "paired", "method": "shpeft", "ratio": 0.1, "versus": "linear",
             "versus_ratio": "native", "margin": 2.0},
            {"id": "C5", "claim": "sparse", "kind": "sparsity", "keep_fraction": 0.1, "share": 0.5}]},
        "resources": {"threads": 1, "gpus": 0},
        "data_mirror": str(work / "mirror"), "sources": {k: str(v) for k, v in sources.items()},
        "accept_checksum_mismatch": REAL,  # tiny files: not the published counts / md5s -> user-supplied
    }
    (work / "offline.yaml").write_text(yaml.safe_dump(study))
    proc = snakemake(work, "--cores", "2", "all")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return work, study


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, *args, "--configfile", "offline.yaml"], cwd=work, capture_output=True,
                          text=True, timeout=1200)


def outputs(finished_study) -> Path:
    return finished_study[0] / "results" / "offline"


def test_every_cell_of_every_dataset_finished(finished_study):
    out, study = outputs(finished_study), finished_study[1]
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").rglob("*.json"))]
    # linear: its swept lrs on seed 0 (the grid of 2, and an extension where a round asked for one) + the
    # chosen lr on seed 1; shpeft: seeds 0 and 1
    last = {r.parent: r for r in sorted((out / "selected").rglob("round*.json"))}.values()
    swept = sum(len(json.loads(r.read_text())["candidates"]) for r in last)
    assert len(last) == len(study["datasets"]) and swept >= 2 * len(study["datasets"])
    assert len(runs) == swept + len(study["datasets"]) * (1 + 2)
    assert {r["status"] for r in runs} == {"ok"}
    assert {r["config"]["dataset"] for r in runs} == set(study["datasets"])
    provenance = {r["config"]["dataset"]: r["provenance"]["data"]["checksum"]["status"] for r in runs}
    assert provenance["covid_ct"] == provenance["standin-derma"] == "user-supplied"


def test_the_chosen_lr_runs_on_the_other_seeds(finished_study):
    out = outputs(finished_study)
    for chosen in (out / "selected").rglob("*.lr"):
        lr = float(chosen.read_text())
        final = json.loads((out / "runs" / chosen.relative_to(out / "selected").with_suffix("") / "s1.json").read_text())
        rounds = sorted(chosen.with_suffix("").glob("round*.json"))
        settled = json.loads(rounds[-1].read_text())
        assert settled["next_lr"] is None and lr == settled["lr"] and final["hparams"]["lr"] == lr
        assert len(rounds) == 1 + settled["extensions_low"] + settled["extensions_high"]  # one round per extension


def test_tables_figures_sparsity_and_report_exist(finished_study):
    out = outputs(finished_study)
    report = (out / "report.md").read_text()
    assert (out / "tables" / "selected_hparams.csv").exists() and list((out / "figures").glob("*.png"))
    assert list((out / "sparsity").glob("*.csv"))
    assert "busi" in report and "covid_ct" in report
    assert report.split("\n## ")[1].startswith("The paper's claims") and "| C1 |" in report and "| C5 |" in report
    claims = (out / "tables" / "claims.csv").read_text()
    assert claims.startswith("claim_id,claim,verdict") and len(claims.splitlines()) == 3
    assert (out / "study.yaml").exists() and list((out / "benchmarks").rglob("*.tsv"))
    assert ", 0 missing" in report and "**Study coverage" in report  # every declared cell ran


def job_counts(dry_run: str) -> dict[str, int]:
    stats = dry_run[dry_run.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"}


def test_the_dag_is_incremental(finished_study):
    """A rerun does nothing; a deleted cell reruns exactly that cell and the aggregates that read it."""
    work = finished_study[0]
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "2", "all").stdout
    cell = next((outputs(finished_study) / "runs" / "busi").rglob("shpeft/r0.1/s1.json"))
    cell.unlink()
    plan = snakemake(work, "-n", "--cores", "2", "all")
    assert job_counts(plan.stdout) == {"cell": 1, "aggregate_tables": 1, "draw_figures": 1, "write_report": 1, "all": 1}
    assert snakemake(work, "--cores", "2", "all").returncode == 0 and json.loads(cell.read_text())["status"] == "ok"


def test_snakemakes_html_report_holds_the_claims_tables_and_figures(finished_study):
    work, study = finished_study
    proc = snakemake(work, "--cores", "1", "--report", "report.html")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    html = (work / "report.html").read_text()
    for category in ("claims", "cost", "tables", "figures", "sparsity"):
        assert f'"{category}"' in html
    figures = [p.name for p in (outputs(finished_study) / "figures").glob("*.png")]
    tables = [p.name for p in (outputs(finished_study) / "tables").glob("*.csv")]
    assert figures and all(name in html for name in [*figures, *tables, "claims.csv", "main_macro_f1.csv", "keep_top.png"])
