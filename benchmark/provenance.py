"""Where a result came from: package versions, git commit, device, time."""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path

import torch

PACKAGES = ("shpeft-bench", "torch", "torchvision", "timm", "open_clip_torch", "peft", "numpy", "scikit-learn", "medmnist")
REPO = Path(__file__).resolve().parent.parent
OUTPUTS = "results"  # committed study outputs: a study rewriting them does not make its code dirty


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU ({torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict:
    """Versions, git commit (and whether the code had local changes: tracked files outside
    ``results/``), device and start time."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){OUTPUTS}")
    return {
        "versions": {p: _version(p) for p in PACKAGES},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "device": device_name(device),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
