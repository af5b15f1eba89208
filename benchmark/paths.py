"""Every path rule of the benchmark, defined once (import-light: the Snakemake DAG, the data
layer, the runner and the analysis all import it).

- a ratio in a path: :func:`ratio_tag` / :func:`parse_ratio_tag` (``native`` or ``%g``);
- a learning rate in a path: :func:`lr_tag` (``%g``);
- a dataset or backbone name in a path: :func:`dataset_tag`, :func:`backbone_tag`;
- a dataset's files: ``<root>/<dataset_tag>/raw`` (downloads) and ``<root>/<dataset_tag>/<size>``
  (the decoded cache) -- :func:`raw_dir`, :func:`cache_dir`, :func:`ready_marker`;
- one cell's result: ``<dataset>/<backbone>/<method>/r<ratio>[/lr<lr>]/s<seed>.json`` -- :func:`run_relpath`;
- the DAG's files, as Snakemake wildcard patterns: :data:`RUN`, :data:`SWEEP_RUN`, :data:`SWEEP_ROUND`,
  :data:`SELECTED_LR`, :data:`FINETUNED`, :data:`CACHE_READY` (the rules import them; nothing restates them).
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path, PurePosixPath

from benchmark.values import NATIVE, parse_ratio

READY = "READY"  # written last into a finished cache folder

# Snakemake wildcard patterns of the DAG's files (relative to a study's output folder, or the data root)
SWEEP = "{dataset}/{backbone}/{method}/r{ratio}"  # one (dataset, backbone, method, ratio) cell of a study
RUN = SWEEP + "/s{seed}.json"  # a result at the method's chosen (or only) learning rate
SWEEP_RUN = SWEEP + "/lr{lr}/s{seed}.json"  # a result of a learning-rate sweep
SWEEP_ROUND = SWEEP + "/round{round}.json"  # one round of a sweep's choice (benchmark.selection.Choice)
SELECTED_LR = SWEEP + ".lr"  # the settled learning rate of a sweep
FINETUNED = "{dataset}/s{seed}"  # a full fine-tuning kept for the sparsity analysis (.json + .safetensors)
CACHE_READY = "{dataset}/{size}/" + READY
STUDY_RECORD = "study.yaml"  # the study as it ran, in its output folder beside runs/ (its protocol and claims)


def ratio_tag(ratio: float | str | None) -> str:
    """``native`` for a method's own size (None, "native", NaN), else the ratio as ``%g``
    (1e-05, 0.0001, 0.01)."""
    if ratio is None or ratio == NATIVE or (isinstance(ratio, float) and math.isnan(ratio)):
        return NATIVE
    return f"{float(ratio):g}"


def parse_ratio_tag(tag: str) -> float | None:
    """Inverse of :func:`ratio_tag`: ``native`` -> None, else the ratio (``ValueError`` if it is none)."""
    return parse_ratio(tag)


def lr_tag(lr: float) -> str:
    """A learning rate as it appears in a path (``%g``: 0.001, 3e-05)."""
    return f"{float(lr):g}"


def backbone_tag(backbone: str) -> str:
    """``timm:deit_tiny_patch16_224`` -> ``timm-deit_tiny_patch16_224`` (one path segment)."""
    return backbone.replace(":", "-").replace("/", "-")


def dataset_tag(name: str) -> str:
    """One path segment per dataset name: registered names as they are; a name with a path in it
    (``folder:/data/my scans``) becomes ``folder-my_scans-<8 hex of the absolute path>`` (letters, digits,
    ``._-`` only, so that shells and Snakemake wildcards take it as it is)."""
    prefix, sep, argument = name.partition(":")
    if not sep:
        return name
    where = Path(argument).expanduser().resolve()
    digest = hashlib.sha1(str(where).encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", where.name) or "root"
    return f"{prefix}-{readable}-{digest}"


def raw_dir(root: str | Path, name: str) -> Path:
    """Where dataset ``name``'s raw files (downloads, extracted archives) live."""
    return Path(root) / dataset_tag(name) / "raw"


def cache_dir(root: str | Path, name: str, size: int) -> Path:
    """Where dataset ``name``'s decoded splits at ``size`` px live: one folder per dataset name."""
    return Path(root) / dataset_tag(name) / str(size)


def ready_marker(root: str | Path, name: str, size: int) -> Path:
    """The file whose existence means the cache of ``name`` at ``size`` px is complete."""
    return Path(root) / CACHE_READY.format(dataset=dataset_tag(name), size=size)


def run_relpath(
    dataset: str, backbone: str, method: str, ratio: float | str | None, seed: int, lr: float | None = None
) -> Path:
    """``<dataset>/<backbone>/<method>/r<ratio>/s<seed>.json``; with a swept learning rate
    ``.../r<ratio>/lr<lr>/s<seed>.json``."""
    parts = {"dataset": dataset_tag(dataset), "backbone": backbone_tag(backbone), "method": method,
             "ratio": ratio_tag(ratio), "seed": seed}
    return Path(RUN.format(**parts) if lr is None else SWEEP_RUN.format(**parts, lr=lr_tag(lr)))


def parse_run_relpath(path: str | Path) -> dict:
    """The run identity (dataset tag, backbone tag, method, ratio, seed, lr) of a result file, read back
    from its path; {} if the path is not a run path. Accepted only if :func:`run_relpath` rebuilds
    exactly that tail, so the layout is defined there alone."""
    parts = PurePosixPath(Path(path).as_posix()).parts
    for n_lr in (1, 0):  # with and without the ``lr<lr>`` segment
        tail = parts[-(5 + n_lr):]
        if len(tail) < 5 + n_lr:
            continue
        dataset, backbone, method, ratio, *lr, seed = tail
        try:
            identity = {"dataset": dataset, "method": method, "ratio": parse_ratio_tag(ratio.removeprefix("r")),
                        "seed": int(seed.removeprefix("s").removesuffix(".json"))}
            lr_value = float(lr[0].removeprefix("lr")) if lr else None
        except ValueError:
            continue
        rebuilt = run_relpath(dataset, backbone, method, identity["ratio"], identity["seed"], lr=lr_value)
        if rebuilt.parts == tail:
            return {**identity, "backbone": backbone, **({"lr": lr_value} if lr else {})}
    return {}
