import json

import numpy as np
import pytest

from analysis.results import flatten, load_runs, one_ratio_per_method, ratio_tag


def test_one_row_per_file_with_statuses(runs_dir):
    df = load_runs(runs_dir)
    assert len(df) == 9 * 2 * 3 + 6 + 1
    assert df["status"].value_counts().to_dict() == {"ok": 50, "failed": 4, "unreachable": 6, "corrupt": 1}


def test_malformed_file_is_recorded_as_corrupt_with_identity_from_path(runs_dir):
    df = load_runs(runs_dir)
    bad = df[df["status"] == "corrupt"].iloc[0]
    assert "not JSON" in bad["error"]
    assert (bad["dataset"], bad["method"], bad["ratio_tag"], bad["seed"]) == ("covid_ct", "lora", "0.001", 0)


def test_flattening_of_config_budget_metrics_and_provenance(runs_dir):
    df = load_runs(runs_dir)
    ok = df[(df["method"] == "full") & (df["dataset"] == "covid_ct")].sort_values("seed")
    assert ok["test.macro_f1"].tolist() == [0.80, 0.82, 0.84]
    assert ok["test.accuracy"].tolist() == pytest.approx([0.85, 0.87, 0.89])
    assert ok["budget.achieved_ratio"].tolist() == [1.0] * 3
    assert ok["config.epochs"].tolist() == [2] * 3
    assert ok["provenance.versions.torch"].iloc[0] == "2.14.1"
    assert "config.identity" not in df.columns and "metrics.history" not in df.columns
    failed = df[df["status"] == "failed"]
    assert failed["test.macro_f1"].isna().all() and failed["error"].str.contains("NaN").all()


def test_native_ratio_and_tags(runs_dir):
    df = load_runs(runs_dir)
    full = df[df["method"] == "full"]
    assert full["ratio"].isna().all() and set(full["ratio_tag"]) == {"native"}
    assert ratio_tag(1e-4) == "0.0001" and ratio_tag(None) == "native" and ratio_tag(np.nan) == "native"


def test_list_of_files_wrong_schema_and_missing_root(tmp_path, runs_dir):
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"schema": 99, "config": {}}))
    good = next(runs_dir.rglob("s1.json"))
    df = load_runs([good, wrong])
    assert df["status"].tolist() == ["ok", "corrupt"]
    assert "schema" in df["error"].iloc[1]
    with pytest.raises(FileNotFoundError):
        load_runs(tmp_path / "nowhere")
    assert load_runs([]).empty


def test_flatten_nested():
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": 3}) == {"a.b": 1, "a.c.d": [2], "e": 3}


def test_one_ratio_per_method(runs_dir):
    df = load_runs(runs_dir)

    def picked(frame):
        return frame.groupby("method")["ratio_tag"].agg(lambda s: sorted(set(s))).to_dict()

    at_1e4 = picked(one_ratio_per_method(df, 1e-4))
    assert at_1e4["shpeft"] == ["0.0001"] and at_1e4["lora"] == ["0.0001"] and at_1e4["full"] == ["native"]
    at_1e2 = picked(one_ratio_per_method(df, 1e-2))
    assert at_1e2["shpeft"] == ["0.001"]  # closest in log space
    assert at_1e2["lora"] == ["native"] and at_1e2["vpt-deep"] == ["1e-05"]
    assert picked(one_ratio_per_method(df, 1e-2, overrides={"lora": 1e-4}))["lora"] == ["0.0001"]
