"""benchmark.study: a study's checks, cells, sweep and lr selection, and the schema against the dataclasses."""
from pathlib import Path

import pytest
import yaml

import baselines
from benchmark import study as studies
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
    assert studies.sweep_inputs(s, "synthetic-medmnist", "lora", "0.01") == [
        c.path(s) for c in cells if c.method == "lora" and c.ratio == 0.01 and c.lr is not None]


def test_select_lr_takes_the_best_mean_validation_score_and_counts_failures_as_zero():
    def r(lr, f1, status="ok"):
        return {"status": status, "hparams": {"lr": lr}, "metrics": {"val": {"macro_f1": f1}}}

    best, means = studies.select_lr([r(1e-3, 0.6), r(1e-3, 0.8), r(1e-2, 0.75), r(1e-1, 0.9, "failed")])
    assert best == 1e-2 and means == pytest.approx({1e-3: 0.7, 1e-2: 0.75, 1e-1: 0.0})
    assert studies.select_lr([r(1e-3, 0.5), r(1e-2, 0.5)])[0] == 1e-3  # tie: the smaller lr
    assert studies.select_lr([{"status": "unreachable", "hparams": {"lr": x}} for x in (0.1, 0.01)]) == (0.01, {})


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
    ({"backbone": "nope"}, "--backbone: unknown backbone 'nope'"),
    ({"image_size": 30}, "--image-size: got 30; tiny_vit needs a multiple of its patch size 8"),
    ({"train": {"epochs": 2, "warmup_epochs": 5}}, "--warmup-epochs: got 5, more than --epochs 2"),
    ({"lr_sweep": {"lrs": {"nope": [0.1]}}}, "methods: unknown PEFT method 'nope'"),
    ({"method_train": {"nope": {"epochs": 3}}}, "methods: unknown PEFT method 'nope'"),
    ({"method_train": {"lora": {"warmup_epochs": 5}}}, "method_train: lora: --warmup-epochs: got 5, more than --epochs 2"),
    ({"method_train": {"lora": {"lr": 0.1}}, "lr_sweep": {"multipliers": [1]}}, "lora: a fixed lr"),
])
def test_check_names_every_bad_name_and_value(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        studies.check(base(**change))


def test_schema_train_settings_are_the_dataclass_fields():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["train"]["$ref"] == schema["properties"]["method_train"]["additionalProperties"]["$ref"]
    train = schema["$defs"]["train_settings"]
    assert set(train["properties"]) == (set(TRAIN_FIELDS) - {"progress"}) | set(studies.STUDY_SETTINGS)
    assert not any("default" in p for p in train["properties"].values())  # defaults live in the dataclasses
    from_flat({"dataset": "d", "method": "m", **{k: None for k in train["properties"]}})  # every name is accepted


@pytest.mark.parametrize("name", ["paper", "medmnist", "smoke", "cpu"])
def test_shipped_configs_pass_the_checks(name):
    studies.check(yaml.safe_load((REPO / "workflow" / "config" / f"{name}.yaml").read_text()))
