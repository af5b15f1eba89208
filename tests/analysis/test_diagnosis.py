"""The below-the-probe diagnosis: each verdict from a history, and which cells it lists."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis.diagnosis import below_probe, below_probe_table, verdict
from analysis.render import to_markdown
from benchmark.result import Result


def history(losses, f1s):
    return [{"epoch": i + 1, "train_loss": loss, "val_macro_f1": f1} for i, (loss, f1) in enumerate(zip(losses, f1s))]


@pytest.mark.parametrize("losses, f1s, start", [
    ([1.07, 1.28, 1.10, 0.96, 0.95, 0.945], [0.24, 0.24, 0.24, 0.24, 0.24, 0.245], "stuck"),
    ([1.09, 1.18, 1.11, 0.91, 0.80, 0.77], [0.24, 0.31, 0.37, 0.37, 0.40, 0.45], "unstable start"),
    ([1.00, 0.90, 0.80, 0.70, 0.60, 0.50], [0.30, 0.40, 0.45, 0.50, 0.55, 0.60], "under-trained"),
    ([1.00, 0.70, 0.50, 0.40, 0.30, 0.29], [0.50, 0.70, 0.60, 0.55, 0.52, 0.50], "over-fits"),
    ([1.00, 0.80, 0.79, 0.785, 0.784, 0.784], [0.40, 0.50, 0.52, 0.53, 0.52, 0.53], "converged"),
    ([1.00], [0.5], "too few"),
])
def test_verdict_names_what_the_history_shows(losses, f1s, start):
    assert verdict(history(losses, f1s)).startswith(start)


def _run(tmp_path, method, seed, f1, achieved, hist=None):
    path = tmp_path / f"{method}_{seed}.json"
    scores = {"macro_f1": f1}
    Result(status="ok", config={"dataset": "busi", "backbone": "b", "method": method, "seed": seed, "ratio": None},
           provenance={}, budget={"achieved_ratio": achieved},
           metrics={"test": scores, "val": scores, "history": hist or []}).write(path)
    return {"dataset": "busi", "backbone": "b", "method": method, "ratio_tag": "native", "seed": seed, "lr_tag": "0.001",
            "status": "ok", "budget.achieved_ratio": achieved, "test.macro_f1": f1, "path": str(path)}


def test_below_probe_lists_only_cells_under_the_probe_mean_with_the_lowest_seed_history(tmp_path):
    stuck = history([1.0, 0.99], [0.24, 0.24])
    rows = [_run(tmp_path, "linear", s, f, 0.0) for s, f in enumerate([0.50, 0.60])]  # probe mean 0.55
    rows += [_run(tmp_path, "vpt", s, f, 1e-2, stuck if s == 0 else None) for s, f in [(1, 0.50), (0, 0.30)]]
    rows += [_run(tmp_path, "lora", s, f, 1e-2) for s, f in enumerate([0.56, 0.60])]
    out = below_probe(pd.DataFrame(rows))
    assert list(out["method"]) == ["vpt"]
    rec = out.iloc[0]
    assert rec["mean"] == pytest.approx(0.40) and rec["probe_mean"] == pytest.approx(0.55) and rec["seed"] == 0
    assert rec["train_loss"] == "1.00 0.99" and rec["verdict"].startswith("stuck")
    text = to_markdown(below_probe_table(out))
    assert "| busi | vpt | native | 0.001 | 40.0 | 55.0 |" in text


def test_below_probe_is_empty_without_a_probe(tmp_path):
    assert below_probe(pd.DataFrame([_run(tmp_path, "lora", 0, 0.5, 1e-2)])).empty


def test_runs_near_chance_are_listed_with_their_history(tmp_path):
    from analysis.diagnosis import near_chance

    stuck = history([1.1, 1.1], [0.2, 0.2])
    rows = [_run(tmp_path, m, 0, 0.5, 1e-2, stuck if m == "vpt" else None) for m in ("vpt", "lora")]
    rows[0] |= {"test.balanced_accuracy": 0.36, "test.per_class_f1": [0.5, 0.0, 0.0]}  # chance 1/3: 0.027 above
    rows[1] |= {"test.balanced_accuracy": 0.40, "test.per_class_f1": [0.5, 0.2, 0.1]}  # 0.067 above
    out = near_chance(pd.DataFrame(rows))
    assert list(out["method"]) == ["vpt"] and out["chance"].item() == pytest.approx(1 / 3)
    assert out["verdict"].item().startswith("stuck")
