"""The runner under hostile input: every bad argument is named before any data or model work (one line,
exit 2, no traceback), a read-only destination fails before training, and a run killed at any point
and started again gives the same result as an uninterrupted one."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark import data
from benchmark.run import main

REPO = Path(__file__).resolve().parents[2]
GOOD = ["--dataset", "synthetic-medmnist", "--method", "shpeft", "--ratio", "0.01", "--backbone", "tiny_vit",
        "--image-size", "32", "--pretrained", "false", "--epochs", "2", "--batch-size", "32", "--calib-images", "32",
        "--no-progress"]


def with_args(**changes: str) -> list[str]:
    args = list(GOOD)
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


BAD = [
    ({"epochs": "0"}, "--epochs: got 0; expected an integer >= 1"),
    ({"epochs": "-3"}, "--epochs: got -3"),
    ({"image_size": "0"}, "--image-size: got 0; expected a positive integer"),
    ({"image_size": "7"}, "--image-size: got 7; tiny_vit needs a multiple of its patch size 8"),
    ({"n_per_class": "0"}, "--n-per-class: got 0"),
    ({"n_per_class": "-1"}, "--n-per-class: got -1"),
    ({"batch_size": "0"}, "--batch-size: got 0"),
    ({"seed": "-1"}, "--seed: got -1; expected an integer in [0, 2**32)"),
    ({"ratio": "2"}, "--ratio: got '2'; expected a number in (0, 1] or 'native'"),
    ({"ratio": "nan"}, "--ratio: got 'nan'"),
    ({"ratio": "-0.1"}, "--ratio: got '-0.1'"),
    ({"ratio": "1e-400"}, "--ratio: got '1e-400'"),
    ({"lr": "abc"}, "--lr: got 'abc'; expected a number"),
    ({"lr": "0"}, "--lr: got 0.0; expected a positive number"),
    ({"warmup_epochs": "5"}, "--warmup-epochs: got 5.0, more than epochs (2)"),
    ({"method": "no-such"}, "--method: unknown PEFT method 'no-such'"),
    ({"dataset": "no-such"}, "--dataset: unknown dataset 'no-such'"),
    ({"backbone": "no-such"}, "--backbone: unknown backbone 'no-such'"),
    ({"checkpoint": "/no/such/file.safetensors"}, "--checkpoint: no such file"),
    ({"checkpoint": "/tmp"}, "--checkpoint: '/tmp' is a folder; expected a weights file"),
    ({"device": "cuda:0"}, "--device: got 'cuda:0' but no CUDA device is available"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[next(iter(c)) + "=" + next(iter(c.values())) for c, _ in BAD])
def test_bad_argument_is_named_before_any_work(tmp_path, capsys, changes, message):
    root = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_:
        main(with_args(**changes) + ["--data-root", str(root), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not root.exists() and not (tmp_path / "r.json").exists()  # no data was touched, nothing written


def test_cli_error_is_one_line_without_traceback_and_fast(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmark.run", *with_args(epochs="0"), "--data-root",
                           str(tmp_path / "data")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - start < 15
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --epochs: got 0; expected an integer >= 1"
    debug = subprocess.run([sys.executable, "-m", "benchmark.run", *with_args(epochs="0"), "--debug"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data.prepare("synthetic-medmnist", root, size=32)
    return root


@pytest.fixture(params=["read-only folder", "under a file"])
def unwritable(request, tmp_path):
    """A results root that cannot be written: a read-only folder (root can still write there, so for
    root a folder below a regular file stands in for it)."""
    if request.param == "read-only folder":
        folder = tmp_path / "results"
        folder.mkdir()
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user that can write to read-only folders")
        yield folder
        folder.chmod(0o755)
    else:
        (tmp_path / "a-file").write_text("")
        yield tmp_path / "a-file" / "results"


def test_unwritable_results_root_fails_before_training(data_root, unwritable, capsys):
    start = time.perf_counter()
    with pytest.raises(SystemExit):
        main(GOOD + ["--data-root", str(data_root), "--results-root", str(unwritable)])
    err = capsys.readouterr().err
    assert err.startswith("error: --results-root: ") and ("cannot write to" in err or "cannot be created" in err)
    assert time.perf_counter() - start < 15


def _run(data_root: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmark.run", *GOOD, "--data-root", str(data_root),
                             "--out", str(out)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill_at_a_random_point_then_rerun_gives_the_uninterrupted_result(data_root, tmp_path):
    reference = tmp_path / "reference.json"
    assert _run(data_root, reference).wait(timeout=300) == 0
    expected = json.loads(reference.read_text())["metrics"]
    rng = random.Random(0)
    for attempt in range(2):
        out = tmp_path / f"killed{attempt}.json"
        proc = _run(data_root, out)
        time.sleep(rng.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not out.exists() or json.loads(out.read_text())["status"] == "ok"  # never a partial result
        assert _run(data_root, out).wait(timeout=300) == 0
        assert json.loads(out.read_text())["metrics"] == expected
        assert not list(tmp_path.glob(".*.tmp"))
