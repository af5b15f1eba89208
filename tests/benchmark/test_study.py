"""benchmark.study: a study's checks, cells, sweep and lr selection, and the schema against the dataclasses."""
import re
from pathlib import Path

import pytest
import yaml

import pandas as pd

import baselines
from benchmark import study as studies
from benchmark.result import Result
from benchmark.selection import SweepRule
from benchmark.config import TRAIN_FIELDS, ConfigError, from_flat

REPO = Path(__file__).resolve().parents[2]


def base(**kw) -> dict:
    return {"study": "t", "output": "out", "backbone": "tiny_vit", "image_size": 32, "datasets": ["synthetic-medmnist"],
            "methods": {"linear": ["native"], "lora": [0.01, 0.1]}, "seeds": [0, 1, 2], "train": {"epochs": 2}, **kw}


def test_plain_cells_are_the_full_grid():
    cells = studies.cells(base())
    assert len(cells) == 3 * 3 and all(c.lr is None for c in cells)
    assert cells[0].path(base()) == "out/runs/synthetic-medmnist/tiny_vit/linear/rnative/s0.json"


def test_sweep_runs_each_lr_on_the_sweep_seed_and_the_chosen_lr_on_the_others():
    s = base(lr_sweep={"seeds": [0], "multipliers": [1, 10], "lrs": {"linear": [0.01, 0.1, 1]}})
    cells = studies.cells(s)
    linear = [c for c in cells if c.method == "linear"]
    assert sorted((c.seed, c.lr) for c in linear) == [(0, 0.01), (0, 0.1), (0, 1.0), (1, None), (2, None)]
    lora_lr = baselines.get("lora").recipe.lr
    assert studies.sweep_lrs(s, "lora") == [float(f"{lora_lr:g}"), float(f"{10 * lora_lr:g}")]
    assert "lr0.1/s0.json" in linear[1].path(s)
    grid = studies.sweep_lrs(s, "lora")
    assert studies.sweep_inputs(s, "synthetic-medmnist", "lora", "0.01", grid) == [
        c.path(s) for c in cells if c.method == "lora" and c.ratio == 0.01 and c.lr is not None]
    extended = studies.round_lrs(s, "lora", [{"next_lr": 0.03}, {"next_lr": 0.09}])
    assert extended == [*grid, 0.03, 0.09]


def result(lr, val, status="ok", test=0.5, seed=0):
    metrics = {"val": {"macro_f1": val}, "test": {"macro_f1": test}} if status == "ok" else None
    return Result(status=status, config={"dataset": "d", "method": "m", "backbone": "b", "seed": seed, "ratio": None},
                  hparams={"lr": lr}, recipe={}, provenance={}, metrics=metrics,
                  error=None if status != "failed" else "NaN", budget={"achieved_ratio": 0.0})


def test_a_round_takes_the_best_mean_validation_score_and_counts_failures_as_zero():
    rule = SweepRule()
    choice = studies.choose_from_results([result(1e-3, 0.6), result(1e-3, 0.8, seed=1), result(1e-2, 0.75),
                                          result(1e-1, 0.9, "failed")], [1e-3, 1e-2, 1e-1], rule)
    assert choice.lr == 1e-2 and choice.means == pytest.approx({1e-3: 0.7, 1e-2: 0.75, 1e-1: 0.0})
    assert choice.next_lr is None and choice.edge is None
    tie = studies.choose_from_results([result(1e-3, 0.5), result(1e-2, 0.5)], [1e-3, 1e-2], rule)
    assert tie.lr == 1e-3 and tie.next_lr is None  # a tie goes to the smaller lr, and a plateau is not extended
    nothing = studies.choose_from_results([result(x, None, "unreachable") for x in (0.1, 0.01)], [0.01, 0.1], rule)
    assert nothing.lr is None and studies.settled_lr(nothing.record()) == 0.01


def test_a_best_lr_at_an_edge_extends_the_grid_until_the_limit():
    rule = SweepRule(step=3, max_extensions=2)
    grid = [1e-3, 3e-3]
    up = studies.choose_from_results([result(1e-3, 0.5), result(3e-3, 0.6)], grid, rule)
    assert (up.edge, up.next_lr) == ("high", 0.009)
    down = studies.choose_from_results([result(1e-3, 0.7), result(3e-3, 0.6)], grid, rule)
    assert (down.edge, down.next_lr) == ("low", 0.00033)
    runs = [result(lr, v) for lr, v in ((1e-3, 0.5), (3e-3, 0.6), (9e-3, 0.7), (0.027, 0.8))]
    limit = studies.choose_from_results(runs, grid, rule)
    assert limit.lr == 0.027 and limit.next_lr is None and limit.limit_hit and limit.extensions == {"low": 0, "high": 2}
    inside = studies.choose_from_results([*runs[:3], result(0.027, 0.65)], grid, rule)
    assert inside.lr == 0.009 and not inside.limit_hit and inside.next_lr is None


def test_selection_never_reads_a_test_metric():
    """The same validation scores with any test scores (or none) give the same choice, in the DAG and the tables."""
    from analysis.tuning import select_lr

    runs = [(1e-3, 0.61, 0), (3e-3, 0.74, 0), (1e-2, 0.70, 0), (3e-3, 0.71, 1)]
    for tests in ([0.1, 0.2, 0.9, 0.3], [0.9, 0.1, 0.2, 0.8], [float("nan")] * 4):
        results = [result(lr, val, test=t, seed=s) for (lr, val, s), t in zip(runs, tests)]
        assert studies.choose_from_results(results, [1e-3, 1e-2], SweepRule()).lr == 3e-3
        frame = pd.DataFrame([{"dataset": "d", "backbone": "b", "method": "m", "ratio_tag": "native", "seed": s,
                               "lr": lr, "lr_tag": f"{lr:g}", "status": "ok", "val.macro_f1": val, "test.macro_f1": t}
                              for (lr, val, s), t in zip(runs, tests)])
        selected, choices = select_lr(frame)
        assert choices["lr"].tolist() == ["0.003"] and set(selected["lr"]) == {3e-3}


def test_run_args_pass_only_what_the_study_sets():
    args = studies.run_args(base(train={"epochs": 3, "augment": False, "calib_images": 8}))
    assert args == ("--backbone tiny_vit --image-size 32 --epochs 3 --augment false --calib-images 8")


def test_method_train_overrides_the_study_settings_for_that_method_only():
    s = base(train={"epochs": 3, "augment": False}, method_train={"lora": {"epochs": 9, "warmup_epochs": 2}},
             lr_sweep={"multipliers": [1, 3]})
    assert studies.run_args(s, "lora") == "--backbone tiny_vit --image-size 32 --epochs 9 --augment false --warmup-epochs 2"
    assert studies.run_args(s, "linear") == studies.run_args(s) == "--backbone tiny_vit --image-size 32 --epochs 3 --augment false"
    scaled = base(method_train={"lora": {"lr_scale": 10}}, lr_sweep={"multipliers": [1]})
    assert studies.sweep_lrs(scaled, "lora") == [float(f"{10 * baselines.get('lora').recipe.lr:g}")]
    studies.check(s)


@pytest.mark.parametrize("change, message", [
    ({"datasets": ["no-such-data"]}, "datasets: unknown dataset 'no-such-data'"),
    ({"methods": {"no-such-method": [0.1]}}, "methods: unknown PEFT method 'no-such-method'; registered methods: "),
    ({"backbone": "nope"}, "t: backbone: unknown backbone 'nope'"),
    ({"image_size": 30}, "t: image_size: got 30; tiny_vit needs a multiple of its patch size 8"),
    ({"train": {"epochs": 2, "warmup_epochs": 5}}, "t: train: warmup_epochs: got 5, more than epochs (2)"),
    ({"train": {"epochs": 0}}, "t: train: epochs: got 0; expected an integer >= 1"),
    ({"lr_sweep": {"lrs": {"nope": [0.1]}}}, "t: lr_sweep: lrs: unknown PEFT method 'nope'"),
    ({"method_train": {"nope": {"epochs": 3}}}, "t: method_train: unknown PEFT method 'nope'"),
    ({"dataset_train": {"nope": {"epochs": 3}}}, "t: dataset_train: unknown dataset 'nope'"),
    ({"method_train": {"lora": {"warmup_epochs": 5}}}, "t: method_train: lora: warmup_epochs: got 5, more than epochs (2)"),
    ({"method_train": {"lora": {"lr": 0.1}}, "lr_sweep": {"multipliers": [1]}}, "lora: a fixed lr"),
])
def test_check_names_every_bad_name_and_value(change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        studies.check(base(**change))


def test_schema_train_settings_are_the_dataclass_fields():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for override in studies.OVERRIDES:
        assert schema["properties"]["train"]["$ref"] == schema["properties"][override]["additionalProperties"]["$ref"]
    train = schema["$defs"]["train_settings"]
    assert set(train["properties"]) == (set(TRAIN_FIELDS) - {"progress"}) | set(studies.STUDY_SETTINGS)
    assert not any("default" in p for p in train["properties"].values())  # defaults live in the dataclasses
    from_flat({"dataset": "d", "method": "m", **{k: None for k in train["properties"]}})  # every name is accepted


@pytest.mark.parametrize("name", ["paper", "medmnist", "smoke", "cpu"])
def test_shipped_configs_pass_the_checks(name):
    studies.check(yaml.safe_load((REPO / "workflow" / "config" / f"{name}.yaml").read_text()))
