# Studies (grids of cells): loaded, validated (schema, then every name and value) when the DAG is
# parsed, before any job runs. The logic lives in benchmark/study.py; these are thin accessors.
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from benchmark import study as studies
from benchmark.paths import dataset_tag, ready_marker

# The interpreter of the rules: the one running snakemake (the project's venv), or the rule's
# conda environment under --use-conda.
_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if _CONDA else sys.executable
ENV = "../envs/bench.yaml"
SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
DEFAULT_CONFIG = workflow.source_path("../config/paper.yaml")


def load_study(cfg):
    validate(cfg, SCHEMA)  # also fills the schema's defaults
    studies.check(cfg)  # dataset, method and backbone names, training values
    return cfg


def _read(path):
    with open(path) as f:
        return yaml.safe_load(f)


MAIN = load_study(dict(config) if config else _read(DEFAULT_CONFIG))
SMOKE = load_study(_read(workflow.source_path("../config/smoke.yaml")))
STUDIES = {study["output"]: study for study in (SMOKE, MAIN)}
DATA_ROOT = MAIN["data_root"]
# path segment -> dataset name (a folder:<path> dataset has a tag, not its path, in file names)
DATASETS = {dataset_tag(d): d for s in STUDIES.values() for d in s["datasets"]}
SOURCES = {name: path for s in STUDIES.values() for name, path in s.get("sources", {}).items()}
ACCEPT_MISMATCH = {name for s in STUDIES.values() for name in s.get("accept_checksum_mismatch", [])}
DATA_MIRROR = MAIN.get("data_mirror")


wildcard_constraints:
    out="|".join(re.escape(o) for o in STUDIES),
    dataset=r"[^/]+",
    backbone=r"[^/]+",
    method=r"[^/]+",
    ratio=r"native|[0-9.e+-]+",
    lr=r"[0-9.e+-]+",
    seed=r"\d+",


def cell_files(study):
    """Every result file of a study (sweep cells included)."""
    return [c.path(study) for c in studies.cells(study)]


def data_marker(study, tag):
    return str(ready_marker(DATA_ROOT, DATASETS[tag], study["image_size"]))


def dataset_list(study):
    """A study's dataset names as shell words (a folder:<path> name may hold spaces)."""
    return " ".join(shlex.quote(d) for d in study["datasets"])


def dataset_arg(wc):
    return shlex.quote(DATASETS[wc.dataset])


def prepare_args(wc):
    name = DATASETS[wc.dataset]
    args = [f"--from {shlex.quote(str(SOURCES[name]))}"] if name in SOURCES else []
    args += ["--accept-checksum-mismatch"] if name in ACCEPT_MISMATCH else []
    args += [f"--mirror {shlex.quote(str(DATA_MIRROR))}"] if DATA_MIRROR else []
    return " ".join(args)


def run_args(study, method=None):
    return studies.run_args(study, method)


def selected_lr(wc):
    """The lr-selection file a chosen-lr cell reads (none for sweep cells and unswept methods)."""
    if "lr" in wc.keys() or not studies.sweep_lrs(STUDIES[wc.out], wc.method):
        return []
    return f"{wc.out}/selected/{wc.dataset}/{wc.backbone}/{wc.method}/r{wc.ratio}.lr"


def lr_arg(wc, input):
    """``--lr``: a sweep cell's from its path, a chosen-lr cell's from its selection file."""
    if "lr" in wc.keys():
        return f"--lr {wc.lr}"
    return f"--lr $(cat {input.lr})" if input.lr else ""


def resource(study, name, default):
    return study.get("resources", {}).get(name, default)


def sparsity_outputs(study):
    return [f"{study['output']}/sparsity"] if study.get("sparsity", {}).get("enabled", True) else []
