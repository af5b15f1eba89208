"""Learning-rate selection on validation (analysis.tuning) and duplicate runs (analysis.results)."""
import json

import pandas as pd
import pytest

from analysis.results import load_runs
from benchmark.paths import parse_run_relpath
from analysis.tables import write_tables
from analysis.tuning import select_lr
from benchmark.paths import run_relpath

from .conftest import BACKBONE, run_json


def write_lr(root, dataset, method, ratio, seed, lr, val, test, *, swept=True, hparams=True):
    """A run at learning rate ``lr``: under ``lr<lr>/`` when swept, else the plain cell path."""
    result = run_json(dataset, method, ratio, seed, ratio or 1.0, test)
    result["config"]["lr"] = lr if swept or not hparams else None  # a final cell may run at the default lr ...
    result["config"]["identity"] = {k: v for k, v in result["config"].items() if k != "identity"}
    result["metrics"]["val"] = {**result["metrics"]["val"], "macro_f1": val}
    if hparams:
        result["hparams"] = {"lr": lr, "epochs": 2}  # ... but hparams.lr is always the effective one
    path = root / run_relpath(dataset, BACKBONE, method, ratio, seed, lr=lr if swept else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return path


@pytest.fixture
def swept(tmp_path):
    """lora: seed 0 at three lrs (val best at 1e-3), seeds 0-2 at 1e-3 as final cells (seed 0 twice)."""
    root = tmp_path / "runs"
    for lr, val, test in [(1e-4, 0.70, 0.99), (1e-3, 0.80, 0.60), (1e-2, 0.75, 0.98)]:
        write_lr(root, "d", "lora", 1e-2, 0, lr, val, test)
    for seed, test in enumerate([0.60, 0.62, 0.64]):
        write_lr(root, "d", "lora", 1e-2, seed, 1e-3, 0.80 if seed == 0 else 0.5, test, swept=False)
    write_lr(root, "d", "shpeft", 1e-2, 0, 1e-3, 0.9, 0.9, swept=False)
    return root


def test_the_lr_with_the_best_validation_is_reported_never_the_best_test(swept):
    df = load_runs(swept)
    lora = df[df["method"] == "lora"]
    # the swept seed-0 run at 1e-3 and the final seed-0 cell (default lr = 1e-3) are one run
    assert len(lora) == 5
    selected, choices = select_lr(df)
    chosen = selected[selected["method"] == "lora"]
    assert set(chosen["lr_tag"]) == {"0.001"} and sorted(chosen["seed"]) == [0, 1, 2]
    row = choices.set_index("method").loc["lora"]
    # compared on seed 0, the seed every candidate finished (1e-3's other seeds have lower val)
    assert (row["lr"], row["selection_seeds"], row["n_seeds"]) == ("0.001", "0", 3)
    assert row["candidate_lrs"] == "0.0001 0.001 0.01" and row["candidate_val_macro_f1"] == "70.00 80.00 75.00"
    assert row["val_macro_f1_mean"] == pytest.approx(100 * (0.8 + 0.5 + 0.5) / 3)
    assert choices.set_index("method").loc["shpeft", "candidate_lrs"] == "0.001"


def test_tables_report_the_chosen_lr_and_list_the_choice(swept, tmp_path):
    write_tables(load_runs(swept), tmp_path)
    wide = pd.read_csv(tmp_path / "main_macro_f1.csv").set_index("method")
    assert wide.loc["lora", "d_mean"] == pytest.approx(62.0)  # not the 0.99 test F1 of lr 1e-4
    hparams = pd.read_csv(tmp_path / "selected_hparams.csv", dtype={"lr": str})
    assert hparams.set_index("method").loc["lora", "lr"] == "0.001"
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert runs["lr_selected"].sum() == 4 and len(runs) == 6


def test_a_single_or_default_lr_keeps_every_run(tmp_path):
    root = tmp_path / "runs"
    for seed in range(2):
        write_lr(root, "d", "m", None, seed, 3e-4, 0.1 * seed, 0.5, swept=False, hparams=False)
    df = load_runs(root)
    assert set(df["lr_tag"]) == {"0.0003"}  # config.lr when there is no hparams block
    selected, choices = select_lr(df)
    assert len(selected) == 2 and choices["lr"].tolist() == ["0.0003"]
    assert load_runs([]).pipe(select_lr)[1].empty


def test_ties_go_to_the_smaller_lr_and_a_failed_run_scores_zero(tmp_path):
    root = tmp_path / "runs"
    write_lr(root, "d", "m", 0.1, 0, 1e-2, 0.7, 0.5)
    write_lr(root, "d", "m", 0.1, 0, 1e-3, 0.7, 0.5)
    assert select_lr(load_runs(root))[1]["lr"].tolist() == ["0.001"]
    for seed, lr, val in [(1, 1e-2, 0.8), (1, 1e-3, 0.6)]:
        write_lr(root, "d", "m", 0.1, seed, lr, val, 0.5)
    assert select_lr(load_runs(root))[1]["lr"].tolist() == ["0.01"]  # means 75 vs 65
    failed = root / run_relpath("d", BACKBONE, "m", 0.1, 1, lr=1e-2)
    failed.write_text(json.dumps({**json.loads(failed.read_text()), "status": "failed", "metrics": None}))
    row = select_lr(load_runs(root))[1].iloc[0]
    assert (row["lr"], row["candidate_val_macro_f1"]) == ("0.001", "65.00 35.00")  # (0.7 + 0) / 2


def test_identity_from_an_lr_path():
    path = "x/results/runs" / run_relpath("d", BACKBONE, "lora", 1e-2, 3, lr=1e-3)
    assert parse_run_relpath(path) == {"dataset": "d", "backbone": BACKBONE, "method": "lora", "ratio": 1e-2,
                                        "seed": 3, "lr": 1e-3}
    assert parse_run_relpath(path.parent.parent / "s3.json")["ratio"] == 1e-2
    assert parse_run_relpath("x/y/s0.json") == {}
