"""The runner end to end on synthetic data in the real MedMNIST format."""
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import baselines
from benchmark import data
from benchmark.config import ConfigError, from_flat
from benchmark.cell import calibration_sample
from benchmark.result import Result, ResultError
from benchmark.run import metric_differences, parse_args, recorded_config, run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data.prepare("synthetic-medmnist", root, size=32)
    return root


def config(data_root, tmp_path, **kw):
    base = dict(
        dataset="synthetic-medmnist", method="shpeft", backbone="tiny_vit", ratio=0.01, seed=0, epochs=10,
        batch_size=32, lr_scale=10.0, drop_path=0.0, image_size=32, pretrained=False, calib_images=64,
        data_root=str(data_root), out=str(tmp_path / "run.json"), progress=False,
    )
    return from_flat({**base, **kw})


def test_shpeft_on_synthetic_medmnist_beats_chance(data_root, tmp_path):
    other_seed = run(config(data_root, tmp_path, seed=1, out=str(tmp_path / "seed1.json")))
    result = run(config(data_root, tmp_path))
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == result.status == "ok"
    test = saved["metrics"]["test"]
    # 4 balanced classes, 25 training images each: chance macro-F1 is ~0.25; one seed varies by +-0.15
    assert (test["macro_f1"] + other_seed.metrics["test"]["macro_f1"]) / 2 > 0.6
    assert set(test) >= {"macro_f1", "accuracy", "balanced_accuracy", "macro_auc", "per_class_f1"}
    budget = saved["budget"]
    assert budget["trainable"] - budget["head_params"] == round(0.01 * budget["backbone_params"])
    assert budget["achieved_ratio"] == pytest.approx(0.01, rel=1e-3)
    assert saved["config"]["method"] == "shpeft" and saved["config"]["identity"]["ratio"] == 0.01
    prov = saved["provenance"]
    assert prov["versions"]["torch"] and prov["device"] and prov["started"]
    assert len(prov["git_commit"] or "") in (0, 40)
    assert saved["perf"]["train_img_per_s"] > 0 and saved["perf"]["peak_mem_bytes"] > 0
    phases = saved["perf"]["phases"]  # where the process's time went, start-up (imports) included
    assert set(phases) == {"startup_s", "setup_s", "prepare_s", "train_s", "eval_s"} and min(phases.values()) > 0
    assert sum(phases.values()) - phases["startup_s"] <= saved["perf"]["wall_s"] + phases["setup_s"]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


def test_same_seed_twice_gives_identical_metrics(data_root, tmp_path):
    a = run(config(data_root, tmp_path, epochs=2, out=str(tmp_path / "a.json")))
    b = run(config(data_root, tmp_path, epochs=2, out=str(tmp_path / "b.json")))
    assert a.metrics == b.metrics


def test_finished_run_is_skipped_unless_forced(data_root, tmp_path, capsys):
    cfg = config(data_root, tmp_path, method="linear", ratio=None, epochs=1)
    first = run(cfg)
    assert run(cfg).provenance["started"] == first.provenance["started"]
    assert "skip:" in capsys.readouterr().out
    forced = run(from_flat({**cfg.flat(), "force": True}))
    assert forced.status == "ok"
    changed = run(from_flat({**cfg.flat(), "epochs": 2}))  # another config is never skipped
    assert changed.config["epochs"] == 2


@pytest.mark.parametrize(
    "method, ratio, message",
    [("linear", None, "NonFiniteLossError: loss became nan at epoch 1"),  # in training
     ("shpeft", 0.01, "NonFiniteError: task loss is nan on importance batch 0")],  # in the importance pass
)
def test_nan_loss_is_recorded_as_failed(data_root, tmp_path, monkeypatch, method, ratio, message):
    import torch.nn.functional as F

    monkeypatch.setattr(F, "cross_entropy", lambda logits, y: logits.sum() * float("nan"))
    result = run(config(data_root, tmp_path, method=method, ratio=ratio, epochs=1))
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == result.status == "failed"
    assert saved["error"] == message
    assert "metrics" not in saved


def test_unreachable_ratio_is_marked_not_trained(data_root, tmp_path):
    result = run(config(data_root, tmp_path, method="bitfit", ratio=1e-4))
    assert result.status == "unreachable"
    assert "bitfit cannot reach ratio 0.0001" in result.error
    assert result.metrics is None and result.budget["reachable"] is False


def test_cli_parses_ratio_and_rejects_unknown_method(data_root, tmp_path):
    cfg, _ = parse_args(["--dataset", "synthetic-medmnist", "--method", "lora", "--ratio", "native", "--no-progress"])
    assert cfg.ratio is None and cfg.train.progress is False
    assert parse_args(["--dataset", "d", "--method", "lora", "--ratio", "1e-3"])[0].ratio == 1e-3
    with pytest.raises(ConfigError, match="--method: unknown PEFT method .*registered methods: .*shpeft"):
        run(config(data_root, tmp_path, method="no-such-method"))


def test_a_dropped_in_method_file_runs_by_name(data_root, tmp_path):
    """Adding a method = adding one file: the registry finds it and the CLI runs it."""
    path = REPO / "baselines" / "zz_toy_norm_tuning.py"
    path.write_text(textwrap.dedent('''
        """Toy method for the drop-in test: LayerNorm affine parameters + head."""
        from .registry import PeftMethod, register, train_only


        @register("toy-norm")
        class ToyNorm(PeftMethod):
            def attach(self, model, knob, calib):
                return train_only(model, lambda name: "norm" in name)
    '''))
    try:
        out = tmp_path / "toy.json"
        proc = subprocess.run(
            [sys.executable, "-m", "benchmark.run", "--dataset", "synthetic-medmnist", "--method", "toy-norm",
             "--backbone", "tiny_vit", "--pretrained", "false", "--image-size", "32", "--epochs", "1",
             "--batch-size", "32", "--data-root", str(data_root), "--out", str(out), "--no-progress"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = Result.read(out)
        assert result.status == "ok" and result.config["method"] == "toy-norm"
        assert result.budget["trainable"] > result.budget["head_params"]
    finally:
        path.unlink()
    assert "toy-norm" not in baselines.names()  # this process imported the package before the file existed


def test_calibration_sample_is_stratified_seeded_and_mixed():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)  # sorted by class, as folder datasets are
    a = calibration_sample(labels, 100, seed=0)
    assert np.array_equal(a, calibration_sample(labels, 100, seed=0)) and len(set(a.tolist())) == len(a)
    counts = np.bincount(labels[a].numpy(), minlength=3)
    assert abs(len(a) - 100) <= 3 and counts[2] >= 1 and abs(counts[0] - 90) <= 2 and abs(counts[1] - 9) <= 2
    assert set(labels[a[:20]].tolist()) != {0}  # shuffled: the first batch is not one class
    assert np.array_equal(np.sort(calibration_sample(labels, 5000, seed=1)), np.arange(1000))


def test_result_records_calibration_counts_and_rerun_reproduces(data_root, tmp_path, capsys):
    first = run(config(data_root, tmp_path, epochs=1))
    assert sum(first.calibration["class_counts"]) == first.calibration["images"] == 64
    assert first.hparams["lr"] == pytest.approx(baselines.get("shpeft").recipe.lr * 10.0)
    again = run(recorded_config(tmp_path / "run.json", {"out": str(tmp_path / "again.json")}))
    assert all(abs(d) < 1e-6 for *_, d in metric_differences(first, again))
    assert again.config["identity"] == first.config["identity"]


def test_results_written_before_the_result_contract_still_load():
    """A committed cell of the first CPU study (written by the runner before benchmark.result existed)."""
    old = Result.read(REPO / "tests" / "benchmark" / "data" / "result_before_the_contract.json")
    assert old.status == "ok" and old.ratio == 0.01 and old.lr == 0.003 and old.val_score == pytest.approx(0.6469, abs=1e-4)
    cfg = recorded_config(REPO / "tests" / "benchmark" / "data" / "result_before_the_contract.json", {})
    assert (cfg.dataset, cfg.method, cfg.seed, cfg.train.epochs) == ("busi", "shpeft", 1, 6)


@pytest.mark.parametrize("change, message", [
    ({"schema": 2}, "schema 2; this version reads schema 1"),
    ({"config": [1, 2]}, "config: got 'list'; expected an object"),
    ({"config": {"dataset": "d", "method": "m", "backbone": "b", "seed": 0, "ratio": "abc"}},
     "config.ratio: got 'abc'; expected a number in (0, 1] or 'native'"),
    ({"status": "done"}, "status: got 'done'"),
    ({"metrics": {"test": {}, "val": {"macro_f1": 0.5}}}, "metrics.test.macro_f1: got None"),
])
def test_an_invalid_result_file_is_named_with_its_field(tmp_path, change, message):
    good = json.loads((REPO / "tests" / "benchmark" / "data" / "result_before_the_contract.json").read_text())
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(ResultError, match=re.escape(f"{path}: {message}")):
        Result.read(path)
