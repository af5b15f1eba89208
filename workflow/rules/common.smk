# Studies (grids of cells) and the helpers that expand them into files.
import re
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from benchmark.paths import run_relpath

# The interpreter of the rules: the one running snakemake (the project's venv), or the rule's
# conda environment under --use-conda.
_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if _CONDA else sys.executable
ENV = "../envs/bench.yaml"
SCHEMA = workflow.source_path("../schemas/config.schema.yaml")


def load_study(cfg):
    validate(cfg, SCHEMA)  # also fills the schema's defaults
    return cfg


MAIN = load_study(config)
with open(workflow.source_path("../config/smoke.yaml")) as _f:
    SMOKE = load_study(yaml.safe_load(_f))
STUDIES = {study["output"]: study for study in (SMOKE, MAIN)}
DATA_ROOT = MAIN["data_root"]


wildcard_constraints:
    out="|".join(re.escape(o) for o in STUDIES),
    seed=r"\d+",


def cells(study):
    """Every (dataset, method, ratio, seed) result file of a study."""
    return [
        f"{study['output']}/runs/{run_relpath(d, study['backbone'], m, r, s)}"
        for d in study["datasets"]
        for m, ratios in study["methods"].items()
        for r in ratios
        for s in study["seeds"]
    ]


def data_marker(study, dataset):
    return f"{DATA_ROOT}/{dataset}/{study['image_size']}/READY"


def backbone_args(study):
    args = f"--backbone {study['backbone']} --pretrained {study['pretrained']} --image-size {study['image_size']}"
    return args + (f" --checkpoint {study['checkpoint']}" if study.get("checkpoint") else "")


def train_args(study):
    t = study["train"]
    args = (
        f"--epochs {t['epochs']} --batch-size {t['batch_size']} --weight-decay {t['weight_decay']}"
        f" --warmup-epochs {t['warmup_epochs']} --calib-images {t.get('calib_images', 1000)}"
        f" --lr-scale {t.get('lr_scale', 1.0)}"
    )
    if t.get("n_per_class"):
        args += f" --n-per-class {t['n_per_class']}"
    return f"{args} {t.get('extra_args', '')}".strip()


def resource(study, name, default):
    return study.get("resources", {}).get(name, default)


def sparsity_outputs(study):
    return [f"{study['output']}/sparsity"] if study.get("sparsity", {}).get("enabled", True) else []
