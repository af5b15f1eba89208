"""The command-line contract (benchmark/cli.py), checked on every entry point as a real process: a bad
input exits 2 with ONE stderr line ``error: ...`` naming the argument or key, no traceback, nothing
created or modified, in under 15 s (start-up included).

One table, :data:`CASES`, one parametrized test. To cover another command (``benchmark.run``, the
Snakemake config, ...), append ``Case("module args ...", "what the line must name", ...)`` records:
``setup`` builds inputs in the working folder before the snapshot, ``touched`` lists paths that must
still not exist afterwards, ``{outside}`` in the arguments is a path outside the working folder.
"""
from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
LIMIT_S = 15.0
NO_CUDA = not any(Path("/dev").glob("nvidia[0-9]*"))  # without importing torch here
Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad invocation: ``argv`` after ``python -m`` (shell words), the substrings its error line
    must contain (``names``: the argument or key, and anything else it must say), what to build first,
    and the paths that must not exist afterwards."""

    argv: str
    names: str | tuple[str, ...]
    setup: tuple[Setup, ...] = ()
    touched: tuple[str, ...] = ()
    needs_no_cuda: bool = False

    def words(self, outside: Path) -> list[str]:
        return shlex.split(self.argv.replace("{outside}", str(outside)).replace("{repo}", str(REPO)))

    def expected(self) -> tuple[str, ...]:
        return (self.names,) if isinstance(self.names, str) else self.names

    def param(self) -> pytest.param:
        marks = [pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is present")] if self.needs_no_cuda else []
        return pytest.param(self, id=self.argv, marks=marks)


# --- inputs the cases need ------------------------------------------------------------------------------

def a_file(name: str, text: str = "x\n") -> Setup:
    def write(folder: Path) -> None:
        (folder / name).write_text(text)
    return write


def image_folder(name: str, train: list[str], test: list[str]) -> Setup:
    """Two classes (``a``, ``b``) of three tiny PNGs each, with these split files."""
    def write(folder: Path) -> None:
        for path in (folder / name / c / f"{i}.png" for c in "ab" for i in range(3)):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(path)
        (folder / name / "splits").mkdir()
        for split, lines in (("train", train), ("test", test)):
            (folder / name / "splits" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return write


def zeros_zip(name: str, megabytes: int) -> Setup:
    """A zip bomb in miniature: ``megabytes`` MB of zeros, deflated to about a thousandth."""
    def write(folder: Path) -> None:
        with zipfile.ZipFile(folder / name, "w", zipfile.ZIP_DEFLATED) as zf, \
                zf.open("Training/glioma/x.jpg", "w", force_zip64=True) as f:
            for _ in range(megabytes):
                f.write(bytes(1_000_000))
    return write


def a_folder(name: str) -> Setup:
    def make(folder: Path) -> None:
        (folder / name).mkdir()
    return make


TRAIN = ["a/0.png", "b/0.png", "a/1.png", "b/1.png"]
AFILE = a_file("afile")
R = "benchmark.run --dataset synthetic-medmnist --backbone tiny_vit --image-size 32 --epochs 1 --data-root data"
SNAKEMAKE = "snakemake -s {repo}/Snakefile -n --cores 1 all"
LIST_CONFIG = a_file("list.json", '{"schema": 1, "status": "ok", "config": [1, 2], "provenance": {}}')

CASES: list[Case] = [
    # benchmark.data
    Case("benchmark.data prepare synthetic-medmnist --root r --size 0", "--size", touched=("r",)),
    Case("benchmark.data prepare synthetic-medmnist --root r --size -4", "--size", touched=("r",)),
    Case("benchmark.data prepare synthetic-medmnist --root afile", "--root", (AFILE,)),
    Case("benchmark.data synth folder out --classes 1", "--classes", touched=("out",)),
    Case("benchmark.data prepare brain_mri --from bomb.zip --root r", ("bomb.zip", "would unpack to"),
         (zeros_zip("bomb.zip", 40),), touched=("r",)),
    Case("benchmark.data prepare folder:leaky --root r --size 8", ("splits/train.txt", "splits/test.txt", "a/0.png"),
         (image_folder("leaky", TRAIN, ["a/2.png", "a/0.png", "b/2.png"]),), touched=("r",)),
    Case("benchmark.data prepare folder:unknown --root r --size 8", ("train.txt:5", "c/0.png", "class folder"),
         (image_folder("unknown", [*TRAIN, "c/0.png"], ["a/2.png", "b/2.png"]),), touched=("r",)),
    Case("benchmark.data prepare folder:escape --root r --size 8", ("test.txt:3", "../afile"),
         (AFILE, image_folder("escape", TRAIN, ["a/2.png", "b/2.png", "../afile"])), touched=("r",)),
    # benchmark.perf
    Case("benchmark.perf --batch-size 0", "--batch-size", touched=("results",)),
    Case("benchmark.perf --methods bitfit,nosuch", ("--methods", "'nosuch'"), touched=("results",)),
    Case("benchmark.perf --device cuda", "--device", touched=("results",), needs_no_cuda=True),
    Case("benchmark.perf --backbone tiny_vit --image-size 30", ("--image-size", "patch size 8"),
         touched=("results",)),
    Case("benchmark.perf --out-dir afile", "--out-dir", (AFILE,)),
    # benchmark.perf.routes
    Case("benchmark.perf.routes --ratio 0", "--ratio"),
    Case("benchmark.perf.routes --backbone tiny_vit --image-size 30 --device tpu", "--device"),
    # shpeft inspect
    Case("shpeft inspect", "adapter"),
    Case("shpeft inspect missing.safetensors", ("adapter", "missing.safetensors")),
    # analysis
    Case("analysis report --results {outside}", "--results", touched=("{outside}",)),
    Case("analysis report", ("--results", "'results'"), touched=("results",)),
    Case("analysis tables --runs {outside}", "--runs", touched=("{outside}", "results")),
    Case("analysis figures --runs {outside}", "--runs", touched=("{outside}", "results")),
    Case("analysis sparsity --in {outside}", "--in", touched=("{outside}",)),
    Case("analysis sparsity --in .", "overlap.csv"),
    Case("analysis sparsity --in . --out afile/figures", "--out", (AFILE,)),
    Case("analysis tables --runs . --out afile", "--out", (AFILE,)),
    Case("analysis tables --runs . --statuses missing.yaml", "--statuses", touched=("results",)),
    Case("analysis report --results . --statuses list.yaml", ("--statuses", "mapping"),
         (a_file("list.yaml", "- busi\n- covid_ct\n"),)),
    Case("analysis report --results . --statuses bad.yaml", ("--statuses", "YAML"), (a_file("bad.yaml", "a: [\n"),)),
    Case("analysis tables --runs . --ratio 0", "--ratio", touched=("results",)),
    Case("analysis tables --runs . --paper-ratio 1.5", "--paper-ratio", touched=("results",)),
    Case("analysis nosuch", "command"),
    # benchmark.run (R: the reproductions, before any data is prepared)
    Case(f"{R} --method shpeft --ratio 0.02 --out d", ("--out", "is a folder"), (a_folder("d"),), touched=("data",)),
    Case(f"{R} --method shpeft --ratio 0.02 --save-state d", ("--save-state", "is a folder"), (a_folder("d"),),
         touched=("data", "results")),
    Case(f"{R} --method shpeft --ratio 1e-400", ("--ratio", "'1e-400'"), touched=("data", "results")),
    Case(f"{R} --method shpeft --ratio abc", ("--ratio", "'abc'"), touched=("data", "results")),
    Case(f"{R} --method lora --lr abc", ("--lr", "'abc'", "a number"), touched=("data", "results")),
    Case(f"{R} --method lora --epochs 0", ("--epochs", "an integer >= 1"), touched=("data", "results")),
    Case(f"{R} --method lora --checkpoint d", ("--checkpoint", "is a folder"), (a_folder("d"),),
         touched=("data", "results")),
    Case("benchmark.run --dataset synthetic-medmnist --method lora --data-root afile", ("--data-root", "is a file"),
         (AFILE,), touched=("results",)),
    Case(f"{R} --method nosuch", ("--method", "'nosuch'", "registered methods"), touched=("data", "results")),
    Case("benchmark.run --dataset busi", "--method", touched=("data", "results")),
    Case("benchmark.run --rerun list.json", ("--rerun", "config"), (LIST_CONFIG,), touched=("results",)),
    Case("benchmark.run --rerun missing.json", ("--rerun", "missing.json"), touched=("results",)),
    Case("benchmark.run --dataset folder:leaky --method linear --backbone tiny_vit --image-size 8 --data-root r",
         ("splits/train.txt", "splits/test.txt"), (image_folder("leaky", TRAIN, ["a/2.png", "a/0.png", "b/2.png"]),),
         touched=("r", "results")),
    # benchmark.sparsity, benchmark.study, benchmark.prompt_spread
    Case("benchmark.sparsity --runs missing.json --states s.safetensors", ("--runs", "missing.json")),
    Case("benchmark.sparsity --runs list.json --states list.json list.json", ("--states", "2 files"), (LIST_CONFIG,)),
    Case("benchmark.sparsity --runs list.json --states list.json --keep 0", "--keep", (LIST_CONFIG,)),
    Case("benchmark.study choose missing.json --grid 0.001 --out round.json", "missing.json", touched=("round.json",)),
    Case("benchmark.study choose list.json --grid 0.001 --out round.json", ("list.json", "config"), (LIST_CONFIG,),
         touched=("round.json",)),
    Case("benchmark.prompt_spread --dataset busi --prompts -1", "--prompts"),
    # the Snakemake study config (parsed before any job)
    Case(f"{SNAKEMAKE} --config study_file=missing.yaml", ("study file", "missing.yaml")),
    Case(f"{SNAKEMAKE} --config study_file=bad.yaml", ("bad.yaml", "line 3", "not valid YAML"),
         (a_file("bad.yaml", "study: x\nmethods: [\n"),)),
    Case(f"{SNAKEMAKE} --config image_size=big", ("paper.yaml", "image_size", "'big'")),
    Case(f"{SNAKEMAKE} --config 'methods={{lora: [2]}}'", ("paper.yaml", "methods: lora: 0:", "not valid")),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``: its md5 and mtime (files) or ``dir``."""
    return {p.relative_to(folder).as_posix(): "dir" if p.is_dir() else
            f"{hashlib.md5(p.read_bytes()).hexdigest()} {p.stat().st_mtime_ns}" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_a_bad_input_is_one_line_exit_2_and_changes_nothing(case: Case, tmp_path: Path):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    for setup in case.setup:
        setup(work)
    before = snapshot(work)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", *case.words(outside)], cwd=work, capture_output=True, text=True,
                          timeout=4 * LIMIT_S)
    elapsed = time.monotonic() - start
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    assert all(name in lines[0] for name in case.expected()), lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert snapshot(work) == before
    assert not any((work / path.replace("{outside}", str(outside))).exists() for path in case.touched)
    assert not outside.exists()
    assert elapsed < LIMIT_S, f"took {elapsed:.1f} s"
