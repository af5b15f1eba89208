"""The real `all` target end to end (not a dry run), offline: every real dataset name served in its exact
official format from a local mirror (COVID-CT zips + split lists, BUSI zip, a MedMNIST npz behind a
stand-in) or from local sources (Chaoyang json + images, brain MRI folders), plus a `folder:` dataset,
with an lr sweep, through to tables, figures, sparsity and the report."""
import json
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
        "methods": {"linear": ["native"]}, "seeds": [0, 1],
        "lr_sweep": {"seeds": [0], "lrs": {"linear": [0.01, 0.1]}},
        "train": {"epochs": 1, "batch_size": 16, "calib_images": 16, "lr_scale": 10.0},
        "sparsity": {"enabled": True, "keep_fractions": [0.1, 0.5]},
        "resources": {"threads": 1, "gpus": 0},
        "data_mirror": str(work / "mirror"), "sources": {k: str(v) for k, v in sources.items()},
        "accept_checksum_mismatch": REAL,  # tiny files: not the published counts / md5s -> user-supplied
    }
    (work / "offline.yaml").write_text(yaml.safe_dump(study))
    proc = subprocess.run([SNAKEMAKE, "--cores", "2", "all", "--configfile", "offline.yaml"], cwd=work,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return work / "results" / "offline", study


def test_every_cell_of_every_dataset_finished(finished_study):
    out, study = finished_study
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").rglob("*.json"))]
    assert len(runs) == len(study["datasets"]) * (2 + 1)  # 2 sweep lrs on seed 0, the chosen lr on seed 1
    assert {r["status"] for r in runs} == {"ok"}
    assert {r["config"]["dataset"] for r in runs} == set(study["datasets"])
    provenance = {r["config"]["dataset"]: r["provenance"]["data"]["checksum"]["status"] for r in runs}
    assert provenance["covid_ct"] == provenance["standin-derma"] == "user-supplied"


def test_the_chosen_lr_runs_on_the_other_seeds(finished_study):
    out, _ = finished_study
    for chosen in (out / "selected").rglob("*.lr"):
        lr = float(chosen.read_text())
        final = json.loads((out / "runs" / chosen.relative_to(out / "selected").with_suffix("") / "s1.json").read_text())
        assert lr in (0.01, 0.1) and final["hparams"]["lr"] == lr


def test_tables_figures_sparsity_and_report_exist(finished_study):
    out, _ = finished_study
    report = (out / "report.md").read_text()
    assert (out / "tables" / "selected_hparams.csv").exists() and list((out / "figures").glob("*.png"))
    assert list((out / "sparsity").glob("*.csv"))
    assert "busi" in report and "covid_ct" in report
