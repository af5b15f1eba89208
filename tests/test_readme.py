"""The README's documented commands do what the README says (the by-hand cell learns the synthetic set)."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_command(starts: str) -> list[str]:
    """The README's command that starts with ``starts`` (backslash-continued lines joined), as words."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    line = next(m.group(0) for m in re.finditer(rf"^{re.escape(starts)}.*$", text, re.M))
    return shlex.split(line.split("#")[0])


def test_the_by_hand_cell_reaches_the_stated_macro_f1(tmp_path):
    words = readme_command(".venv/bin/python -m benchmark.run --dataset synthetic-medmnist")
    proc = subprocess.run([sys.executable, *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 10/10: train loss" in proc.stdout and "result: results/runs/synthetic-medmnist" in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["test_macro_f1"] >= 0.9
