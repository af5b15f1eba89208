# Studies (grids of cells): loaded and validated (schema, then every name and value) when the DAG is
# parsed, before any job runs; a bad config is one `error:` line. The logic lives in benchmark/study.py
# and the path patterns in benchmark/paths.py; these are thin accessors.
import json
import os
import re
import shlex
import sys

from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from benchmark import paths
from benchmark import study as studies
from benchmark.config import ConfigError
from benchmark.paths import dataset_tag, ready_marker

# The interpreter of the rules: the one running snakemake (the project's venv), or the rule's
# conda environment under --use-conda.
_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if _CONDA else sys.executable
ENV = "../envs/bench.yaml"
SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
CONFIGS = f"{workflow.basedir}/workflow/config"  # the shipped studies
if not os.path.relpath(CONFIGS).startswith(".."):
    CONFIGS = os.path.relpath(CONFIGS)  # named as the user sees them


def load_study(cfg, source):
    studies.check_schema(cfg, SCHEMA, source)  # one line naming the key
    validate(cfg, SCHEMA)  # fills the schema's defaults
    studies.check(cfg)  # dataset, method and backbone names, training values
    return cfg


try:
    MAIN = load_study(*studies.select_study(config, workflow.config_settings.configfiles, f"{CONFIGS}/paper.yaml"))
    SMOKE = load_study(studies.read_yaml(f"{CONFIGS}/smoke.yaml"), "smoke.yaml")
except ConfigError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)

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
    round=r"\d+",


def study_of(wc):
    return STUDIES[wc.out]


def cell_files(study):
    """Every result file of a study known before it runs (a sweep's extensions come from its rounds)."""
    return [c.path(study) for c in studies.cells(study)]


def selected_files(study):
    """The settled lr of every swept (dataset, method, ratio): it needs every round of the sweep."""
    backbone = paths.backbone_tag(study["backbone"])
    return [f"{study['output']}/selected/"
            f"{paths.SELECTED_LR.format(dataset=dataset_tag(d), backbone=backbone, method=m, ratio=paths.ratio_tag(r))}"
            for d in study["datasets"] for m in study["methods"] if studies.sweep_lrs(study, m)
            for r in studies.ratios(study, m)]


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


def run_args(wc, method=None):
    """The study's settings of a cell's (or ``method``'s) runs on its dataset, as benchmark.run flags."""
    return studies.run_args(study_of(wc), method or wc.method, DATASETS[wc.dataset])


def sweep_file(wc, pattern, **fields):
    names = {k: wc[k] for k in ("dataset", "backbone", "method", "ratio")}
    return f"{wc.out}/selected/{pattern.format(**names, **fields)}"


def selected_lr(wc):
    """The lr-selection file a chosen-lr cell reads (none for sweep cells and unswept methods)."""
    if "lr" in wc.keys() or not studies.sweep_lrs(study_of(wc), wc.method):
        return []
    return sweep_file(wc, paths.SELECTED_LR)


def lr_arg(wc, input):
    """``--lr``: a sweep cell's from its path, a chosen-lr cell's from its selection file."""
    if "lr" in wc.keys():
        return f"--lr {wc.lr}"
    return f"--lr $(cat {input.lr})" if input.lr else ""


def earlier_rounds(wc, n):
    """The choices of a sweep's rounds 0..n-1 (each a checkpoint: read once it has run)."""
    fields = {k: wc[k] for k in ("out", "dataset", "backbone", "method", "ratio")}
    return [json.loads(open(checkpoints.sweep_round.get(**fields, round=str(k)).output[0]).read()) for k in range(n)]


def round_inputs(wc):
    """The sweep cells a round compares: the grid plus every earlier round's extension."""
    lrs = studies.round_lrs(study_of(wc), wc.method, earlier_rounds(wc, int(wc.round)))
    return studies.sweep_inputs(study_of(wc), DATASETS[wc.dataset], wc.method, wc.ratio, lrs)


def last_round(wc):
    """The round whose choice is settled (no further extension asked for)."""
    n = 0
    while earlier_rounds(wc, n + 1)[-1]["next_lr"] is not None:
        n += 1
    return sweep_file(wc, paths.SWEEP_ROUND, round=n)


def table_category(wildcards):
    """The report category of a file of the tables folder: claims, cost, or the tables."""
    return next((c for c in ("claims", "cost") if wildcards.name.startswith(c.rstrip("s"))), "tables")


def log_of(pattern):
    """The log file pattern of a result file pattern (``.../s{seed}.json`` -> ``.../s{seed}.log``)."""
    return pattern.removesuffix(".json") + ".log"


def tsv_of(pattern):
    """The benchmark file pattern (Snakemake's wall time and max RSS of the job) of a result file pattern."""
    return pattern.removesuffix(".json") + ".tsv"


def resource(study, name, default):
    return study.get("resources", {}).get(name, default)


def sparsity_outputs(study):
    return [f"{study['output']}/sparsity"] if study.get("sparsity", {}).get("enabled", True) else []


def study_outputs(wc):
    """What every aggregate reads: the study's cells, its settled lrs (so every sweep round has run),
    the study itself, and the sparsity analysis when the study has one."""
    study = study_of(wc)
    return {"runs": cell_files(study), "selected": selected_files(study), "study": f"{wc.out}/{paths.STUDY_RECORD}",
            "sparsity": sparsity_outputs(study)}


def finetune_lr(wc):
    """Full fine-tuning's settled lr on this dataset, when the study sweeps it."""
    study = study_of(wc)
    if not studies.sweep_lrs(study, studies.SPARSITY_METHOD):
        return []
    selected = paths.SELECTED_LR.format(dataset=wc.dataset, backbone=paths.backbone_tag(study["backbone"]),
                                        method=studies.SPARSITY_METHOD, ratio=paths.ratio_tag(None))
    return f"{wc.out}/selected/{selected}"


def finetuned(wc, suffix):
    return [f"{wc.out}/finetuned/{paths.FINETUNED.format(dataset=d, seed=s)}{suffix}"
            for d in map(dataset_tag, study_of(wc)["datasets"]) for s in study_of(wc)["seeds"]]


def sparsity_args(wc):
    """The study's keep fractions and overlap ratio as benchmark.sparsity flags."""
    sparsity = study_of(wc)["sparsity"]
    args = ["--keep", *map(str, sparsity["keep_fractions"])]
    return " ".join(args + (["--overlap-ratio", str(sparsity["overlap_ratio"])] if "overlap_ratio" in sparsity else []))
