"""The SLURM profile (workflow/profiles/slurm) against a real scheduler: workflow/slurm/cluster.sh brings
up a one-node cluster without accounting, and a small smoke study runs through the profile end to end
(every cell a SLURM job, the metrics of a local run, an interrupted run cancels its jobs and resumes).
A fake sbatch shows what a GPU cell asks SLURM for, with no cluster at all."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CLUSTER = REPO / "workflow" / "slurm" / "cluster.sh"
PROFILE = ["--profile", "workflow/profiles/slurm"]
SMOKE = yaml.safe_load((REPO / "workflow" / "config" / "smoke.yaml").read_text())
# The smoke study cut to one dataset and three methods, without the sparsity analysis: the whole smoke
# grid takes ~20 min as SLURM jobs on 2 cores (each job starts Snakemake twice before its cell runs),
# and this test runs its grid twice through SLURM (interrupted, resumed) and once locally.
METHODS = {"linear": ["native"], "lora": [0.02], "shpeft": [0.02]}
CELLS = [f"results/slurm/runs/synthetic-medmnist/{SMOKE['backbone']}/{method}/r{ratio}/s0.json"
         for method, ratios in METHODS.items() for ratio in ratios]
CELL_FINISHED = re.compile(r"Finished jobid: \d+ \(Rule: cell\)")
QUICK = ["--slurm-init-seconds-before-status-checks", "2"]  # job status every few seconds, not every 40 s


def study(**resources) -> dict:
    return SMOKE | {"study": "slurm", "output": "results/slurm", "datasets": ["synthetic-medmnist"],
                    "methods": METHODS, "sparsity": {"enabled": False},
                    "resources": SMOKE["resources"] | resources}


def clone(root: Path, config: dict) -> Path:
    """The workflow files and a study config in a fresh folder: outputs, data and logs stay there."""
    shutil.copy(REPO / "Snakefile", root)
    shutil.copytree(REPO / "workflow", root / "workflow")
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    return root


def command(*args: str) -> list[str]:
    return [SNAKEMAKE, *args, "--configfile", "study.yaml"]


def run(work: Path, *args: str, env=None, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


def slurm_env(**values: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SBATCH_PARTITION", "SBATCH_ACCOUNT")}
    return env | values


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("needs root: workflow/slurm/cluster.sh starts the SLURM daemons")
    missing = [c for c in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(c)]
    if missing:
        pytest.skip(f"SLURM packages absent ({', '.join(missing)}): workflow/slurm/cluster.sh install")
    up = subprocess.run(["bash", CLUSTER, "up"], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        subprocess.run(["bash", CLUSTER, "down"], capture_output=True, timeout=300)
        pytest.fail(up.stderr)
    yield
    subprocess.run(["bash", CLUSTER, "down"], check=True, capture_output=True, timeout=300)


def active_jobs() -> str:
    return subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%i %k"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The study through the profile, interrupted with SIGINT (Ctrl-C) once a cell has finished, then
    rerun; the SLURM logs of finished jobs are kept."""
    work = clone(tmp_path_factory.mktemp("slurm"), study())
    args = [*PROFILE, *QUICK, "--slurm-keep-successful-logs", "all"]
    env = slurm_env(SBATCH_PARTITION="cpu")
    log = work / "first.log"
    with log.open("w") as out:  # SIGINT as at a terminal, even if this test runs with SIGINT ignored
        first = subprocess.Popen(command(*args), cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 900
        while not CELL_FINISHED.search(log.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(1)
        first.send_signal(signal.SIGINT)
        first_rc = first.wait(timeout=300)
    deadline = time.monotonic() + 30
    while active_jobs() and time.monotonic() < deadline:
        time.sleep(1)
    finished = {cell: (work / cell).stat().st_mtime_ns for cell in CELLS if (work / cell).exists()}
    return SimpleNamespace(work=work, first_rc=first_rc, left=active_jobs(), finished=finished,
                           second=run(work, *args, env=env))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    work = clone(tmp_path_factory.mktemp("local"), study())
    proc = run(work, "--cores", "2", *CELLS)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return work


def test_an_interrupted_run_cancels_its_jobs_and_the_rerun_finishes_only_the_rest(slurm_run):
    assert slurm_run.first_rc != 0 and slurm_run.left == ""
    assert 1 <= len(slurm_run.finished) < len(CELLS), slurm_run.finished
    second = slurm_run.second
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert all((slurm_run.work / cell).exists() for cell in CELLS)
    assert (slurm_run.work / "results/slurm/report.md").exists()
    for cell, mtime in slurm_run.finished.items():
        assert (slurm_run.work / cell).stat().st_mtime_ns == mtime, f"{cell} ran again"


def test_every_cell_ran_as_a_slurm_job(slurm_run):
    """Each cell has a log written by SLURM (named by its job id) in which that cell finished."""
    logs = {p: p.read_text() for p in (slurm_run.work / ".snakemake" / "slurm_logs").rglob("*.log")}
    for cell in CELLS:
        ran = [p for p, text in logs.items() if f"output: {cell}" in text and CELL_FINISHED.search(text)]
        assert ran and all(p.stem.isdigit() for p in ran), cell


def test_slurm_metrics_equal_local_metrics(slurm_run, local_run):
    for cell in CELLS:
        slurm, local = (json.loads((work / cell).read_text()) for work in (slurm_run.work, local_run))
        assert slurm["status"] == local["status"] == "ok"
        assert slurm["metrics"] == local["metrics"], cell


def test_a_gpu_cell_asks_for_gpus_on_the_partition_and_account_from_the_environment(tmp_path):
    """No cluster needed: a fake sbatch records the call and refuses it; a fake sacctmgr knows the account."""
    work = clone(tmp_path, study(gpus=1, threads=2, mem_mb=3000, runtime=7))
    fake, calls = tmp_path / "fake-bin", tmp_path / "sbatch-calls"
    fake.mkdir()
    calls.mkdir()
    (fake / "sbatch").write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$SBATCH_CALLS/$$"\n'
                                 'echo "fake sbatch: nothing submitted" >&2\nexit 1\n')
    (fake / "sacctmgr").write_text('#!/bin/sh\necho "$SBATCH_ACCOUNT"\n')
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = slurm_env(PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", SBATCH_CALLS=str(calls),
                    SBATCH_PARTITION="gpu", SBATCH_ACCOUNT="proj-7")
    proc = run(work, *PROFILE, *QUICK, CELLS[0], env=env, timeout=600)
    # The cell runs in the job group "cells", whose failure Snakemake reports without sbatch's message
    # ("Error in group cells ... message: None"); the recorded call is what this test is about.
    assert proc.returncode != 0 and "Error in group cells" in proc.stderr
    [call] = [p.read_text().split("\0")[:-1] for p in calls.iterdir()]  # the cell's; prepare_data ran here
    assert (work / "data" / "synthetic-medmnist").is_dir()
    options = list(zip(call, call[1:]))
    assert "--gpus=1" in call and not any(a.startswith("--gres") for a in call)
    assert ("-p", "gpu") in options and ("-A", "proj-7") in options
    assert "--cpus-per-task=2" in call and ("--mem", "3000") in options and ("-t", "7") in options
