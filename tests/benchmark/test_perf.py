"""benchmark.perf: the rows it measures (counts, optimizer state, ratios, repeats) and the files it
writes. Speed itself is not asserted: these run 1 warm-up + 2 steps of the tiny ViT."""
from __future__ import annotations

import csv
import math
import time

import pytest
import torch

import baselines
import shpeft
from benchmark import perf
from benchmark.perf import routes
from shpeft.sparse import DELTA_GRAD_ROUTES, SparseDeltaLinear

CFG = perf.PerfConfig(backbone="tiny_vit", batch_size=8, warmup=1, steps=2, importance_batches=2, ratios=(1e-2,))
ADAM_STATE_BYTES_PER_WEIGHT = 2 * 4  # exp_avg + exp_avg_sq, float32
ADAM_STEP_BYTES = 4  # one float32 step counter per parameter tensor


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    measured = perf.run(CFG, ["bitfit", "shpeft"], isolate=False)
    return {r["method"]: r for r in measured}


def prepared(name: str) -> baselines.Prepared:
    torch.manual_seed(CFG.seed)
    model = perf.build_backbone(CFG, torch.device("cpu"))
    batch = perf.random_batch(CFG, CFG.size, torch.Generator().manual_seed(CFG.seed))
    return baselines.prepare(baselines.get(name), model, perf.method_ratios(name, CFG)[0], [batch])


def test_references_are_always_measured_and_every_row_has_positive_times(rows):
    assert set(rows) == {"bitfit", "lora", "full", "shpeft", perf.IMPORTANCE_ROW}
    for row in rows.values():
        assert row["ms_per_step"] > 0 and row["img_per_s"] > 0 and row["repeats"] == 1, row
        assert row["ms_per_image"] == pytest.approx(row["ms_per_step"] / CFG.batch_size), row
        assert isinstance(row["peak_mem_bytes"], int), row
        assert row.get("note") is None or not row["note"].startswith("error"), row


@pytest.mark.parametrize("name", ["bitfit", "full", "shpeft"])
def test_trainable_counts_are_those_prepare_reports(rows, name):
    assert rows[name]["trainable"] == prepared(name).trainable


def test_shpeft_optimizer_state_is_two_float32_moments_per_delta_plus_head(rows):
    p = prepared("shpeft")
    k = p.knob_value
    assert k == round(CFG.ratios[0] * p.backbone_params)
    tensors = len(shpeft.delta_sites(p.model)) + 2  # one delta tensor per tuned weight + head weight and bias
    expected = ADAM_STATE_BYTES_PER_WEIGHT * (k + p.head_params) + ADAM_STEP_BYTES * tensors
    assert rows["shpeft"]["opt_state_bytes"] == expected
    full_expected = ADAM_STATE_BYTES_PER_WEIGHT * rows["full"]["trainable"]
    assert rows["full"]["opt_state_bytes"] > full_expected > 10 * expected


def test_ratios_are_relative_to_bitfit_and_full_of_the_same_run(rows):
    assert rows["bitfit"]["time_vs_bitfit"] == 1.0 and rows["bitfit"]["mem_vs_bitfit"] == 1.0
    assert rows["full"]["time_vs_full"] == 1.0 and rows["full"]["mem_vs_full"] == 1.0
    assert rows["lora"]["time_vs_lora"] == 1.0 and rows["lora"]["mem_vs_lora"] == 1.0
    shp = rows["shpeft"]
    assert math.isclose(shp["time_vs_bitfit"], shp["ms_per_step"] / rows["bitfit"]["ms_per_step"])
    assert math.isclose(shp["mem_vs_lora"], shp["peak_mem_bytes"] / rows["lora"]["peak_mem_bytes"])
    assert math.isclose(shp["mem_vs_full"], shp["peak_mem_bytes"] / rows["full"]["peak_mem_bytes"])
    assert rows[perf.IMPORTANCE_ROW]["time_vs_bitfit"] is None


def test_sparse_methods_run_at_every_ratio_and_others_at_native_size_unless_matched():
    two = perf.PerfConfig(ratios=(1e-3, 1e-2))
    assert perf.method_ratios("shpeft", two) == [1e-3, 1e-2]
    assert perf.method_ratios("spt", two) == [1e-3, 1e-2]
    assert perf.method_ratios("adapter", two) == [None]
    assert perf.method_ratios("adapter", perf.PerfConfig(matched=True, ratios=(3e-3,))) == [3e-3]
    # a reference keeps its own-size row (the denominator of the ratio columns) when matched
    assert perf.method_ratios("lora", perf.PerfConfig(matched=True, ratios=(3e-3,))) == [None, 3e-3]
    assert perf.method_ratios("bitfit", perf.PerfConfig(matched=True)) == [None]
    assert perf.jobs(two, ["shpeft"]) == [("bitfit", None), ("lora", None), ("full", None),
                                          ("shpeft", 1e-3), ("shpeft", 1e-2)]


def test_repeats_pool_every_step_and_take_the_median_peak():
    runs = [{"method": "m", "times": [3.0, 1.0], "peak_mem_bytes": 10},
            {"method": "m", "times": [2.0, 9.0], "peak_mem_bytes": 30},
            {"method": "m", "times": [4.0, 5.0], "peak_mem_bytes": 20}]
    row = perf.pool(runs, batch_size=2)
    assert row["ms_per_step"] == 3.5 and row["ms_min"] == 1.0 and row["ms_per_image"] == 1.75
    assert row["peak_mem_bytes"] == 20 and row["repeats"] == 3 and "times" not in row


def test_any_backbone_name_of_the_runner_and_its_own_input_size():
    assert perf.PerfConfig(backbone="tiny_vit").size == 32
    assert perf.PerfConfig(backbone="timm:deit_tiny_patch16_224").size == 224
    assert perf.PerfConfig(backbone="clip_vit_b16", image_size=112).size == 112
    model = perf.build_backbone(perf.PerfConfig(backbone="tiny_vit", image_size=16), torch.device("cpu"))
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, perf.NUM_CLASSES)


def test_interleaved_times_give_every_method_steps_x_repeats_and_leave_out_a_failing_one():
    cfg = perf.PerfConfig(backbone="tiny_vit", batch_size=4, warmup=1, steps=2, repeats=2)
    times = perf.measure.interleaved_times([("bitfit", None), ("no-such-method", None), ("shpeft", 1e-2)], cfg)
    assert list(times) == [("bitfit", None), ("shpeft", 1e-2)]
    assert all(len(t) == cfg.steps * cfg.repeats and min(t) > 0 for t in times.values())


def test_separate_measurements_are_still_available():
    cfg = perf.PerfConfig(backbone="tiny_vit", batch_size=4, warmup=1, steps=2, repeats=2, importance_batches=0,
                          interleave=False)
    rows = {r["method"]: r for r in perf.run(cfg, ["linear"], isolate=False)}
    assert {r["repeats"] for r in rows.values()} == {2} and rows["linear"]["time_vs_bitfit"] > 0


def test_compiled_runs_are_measured_separately(monkeypatch):
    def not_interleaved(*args):
        raise AssertionError("compiled methods must not share one process's recompile budget")

    def fake_measurement(name, ratio, cfg, timed=True):
        return {"method": name, "target_ratio": ratio, "times": [1.0] * cfg.steps if timed else [],
                "peak_mem_bytes": 1}

    monkeypatch.setattr(perf.measure, "interleaved_times", not_interleaved)
    monkeypatch.setattr(perf.measure, "measure_method", fake_measurement)
    cfg = perf.PerfConfig(backbone="tiny_vit", steps=2, compile=True, importance_batches=0)
    rows = perf.run(cfg, ["linear"], isolate=False)
    assert [r["ms_per_step"] for r in rows] == [1.0] * 4


def test_an_isolated_method_runs_in_another_process():
    row = perf.measure._in_subprocess(perf.measure_method, "linear", None, CFG)
    assert row["method"] == "linear" and len(row["times"]) == CFG.steps and min(row["times"]) > 0
    assert row["mem_kind"] == "cpu_live_tensors+rss_anon_growth" and row["peak_mem_bytes"] > 0


def test_main_writes_csv_and_markdown_with_a_provenance_header(tmp_path, capsys):
    argv = ["--methods", "linear", "--batch-size", "4", "--warmup", "1", "--steps", "2", "--repeats", "2",
            "--importance-batches", "1", "--no-isolate", "--device", "cpu", "--out-dir", str(tmp_path)]
    perf.main(argv)
    stem = "tiny_vit_32px_cpu_fp32_b4"
    text = (tmp_path / f"{stem}.csv").read_text().splitlines()
    header = [line for line in text if line.startswith("# ")]
    assert any(line.startswith("# command: python -m benchmark.perf --methods linear") for line in header)
    assert any(line.startswith(f"# torch: {torch.__version__.split('+')[0]}") for line in header)
    assert any(line.startswith("# date: ") for line in header)
    assert any(line.startswith("# device: ") and "CPU" in line for line in header)
    table = list(csv.DictReader(line for line in text if not line.startswith("# ")))
    assert [r["method"] for r in table] == ["bitfit", "lora", "full", "linear", perf.IMPORTANCE_ROW]
    assert float(table[0]["time_vs_bitfit"]) == 1.0 and {r["repeats"] for r in table} == {"2"}
    md = (tmp_path / f"{stem}.md").read_text()
    assert "| method | knob | ratio | trainable | ms/step | min ms | ms/img |" in md and "| linear |" in md
    assert "| linear |" in capsys.readouterr().out


def test_unknown_method_fails_before_measuring():
    with pytest.raises(KeyError, match="registered methods"):
        perf.run(CFG, ["no-such-method"], isolate=False)


def test_ratio_takes_several_values_and_rejects_out_of_range_ones():
    assert perf.parse_args(["--ratio", "1e-3", "1e-2"]).ratios == [1e-3, 1e-2]
    with pytest.raises(SystemExit):
        perf.parse_args(["--ratio", "0"])


def test_route_timing_covers_every_sparse_layer_and_every_route():
    p = prepared("shpeft")
    x, _ = perf.random_batch(CFG, CFG.size, torch.Generator().manual_seed(CFG.seed))
    inputs = routes.layer_inputs(p.model, x)
    assert set(inputs) == {n for n, m in p.model.named_modules() if isinstance(m, SparseDeltaLinear)}
    layer, layer_x = next(iter(inputs.values()))
    times = routes.time_routes(layer, layer_x, repeats=1)
    assert set(times) == set(DELTA_GRAD_ROUTES) and min(times.values()) > 0
    assert layer.route is None and layer.sparse.delta.grad is None  # left as it was found


def test_the_cpu_clock_counts_only_the_time_this_process_runs():
    cpu = torch.device("cpu")
    assert perf.measure.timed_ms(lambda: time.sleep(0.05), cpu, "wall") >= 50
    assert perf.measure.timed_ms(lambda: time.sleep(0.05), cpu, "cpu") < 25


def test_an_unreachable_ratio_is_a_row_without_timings_not_a_timed_unadapted_model():
    cfg = perf.PerfConfig(backbone="tiny_vit", batch_size=4, warmup=1, steps=1, importance_batches=0, ratios=(1e-6,))
    rows = {(r["method"], r.get("target_ratio")): r for r in perf.run(cfg, ["shpeft"], isolate=False)}
    row = next(r for (name, _), r in rows.items() if name == "shpeft")
    assert row["reachable"] is False and "cannot reach ratio 1e-06" in row["note"] and "ms_per_step" not in row
    assert "ms_per_step" in rows[("bitfit", None)]  # the references are still measured
