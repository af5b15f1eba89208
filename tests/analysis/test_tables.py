import re
import statistics

import pandas as pd
import pytest
from scipy import stats

from analysis.reference import dataset_statuses, load_reference
from analysis.render import fmt_percent, fmt_ratio
from analysis.results import load_runs
from analysis.tables import (
    AVERAGE,
    ablation_methods,
    ablation_ratio,
    ablation_table,
    main_methods,
    main_table,
    paper_comparison,
    summarize,
    write_tables,
)

from .conftest import ACC_OFFSET, GRID, run_json, write

DATASETS = ["covid_ct", "chaoyang"]


def ok_values(method, ratio, dataset, offset=0.0):
    return [100 * (v + offset) for v in GRID[(method, ratio)][1][dataset] if v is not None]


def shown(values, mean=None):
    """Brute-force cell text: mean ± sample std [Student-t 95% interval] (scipy's t.interval)."""
    mean = statistics.mean(values) if mean is None else mean
    std = statistics.stdev(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=std / len(values) ** 0.5)
    return f"{mean:.1f} ± {std:.1f} [{low:.1f}, {high:.1f}]"


def cell(long, label, dataset):
    rows = long[(long["label"] == label) & (long["dataset"] == dataset)]
    assert len(rows) == 1
    return rows.iloc[0]


@pytest.fixture
def df(runs_dir):
    return load_runs(runs_dir)


@pytest.mark.parametrize(("metric", "offset"), [("macro_f1", 0.0), ("accuracy", ACC_OFFSET)])
def test_cell_means_and_stds_match_hand_computation(df, metric, offset):
    long = summarize(main_methods(df), metric, DATASETS)
    for (method, ratio), label in [(("full", None), "full"), (("lora", 1e-4), "lora (r=1e-4)"),
                                   (("shpeft", 1e-3), "shpeft (r=1e-3)")]:
        for dataset in DATASETS:
            values, got = ok_values(method, ratio, dataset, offset), cell(long, label, dataset)
            assert got["mean"] == pytest.approx(statistics.mean(values))
            assert got["std"] == pytest.approx(statistics.stdev(values))
            interval = stats.t.interval(0.95, len(values) - 1, loc=got["mean"], scale=got["std"] / len(values) ** 0.5)
            assert (got["ci_low"], got["ci_high"]) == pytest.approx(interval)
    full = cell(long, "full", AVERAGE)  # per-seed averages 75, 77, 79 (+ offset)
    assert (full["mean"], full["std"]) == (pytest.approx(77.0 + 100 * offset), pytest.approx(2.0))
    lora = cell(long, "lora (r=1e-4)", AVERAGE)  # seed 2 failed on chaoyang: std over seeds 0, 1 only
    assert lora["mean"] == pytest.approx((83.0 + 72.0) / 2 + 100 * offset)
    assert lora["std"] == pytest.approx(statistics.stdev([76.0, 78.0]))


def test_main_table_text_labels_and_failed_cells(df):
    _, table = main_table(main_methods(df), "macro_f1", DATASETS)
    assert table.header == ["Method", "Trainable", "covid_ct", "chaoyang", AVERAGE]
    rows = {r[0].text: [c.text for c in r[1:]] for r in table.rows}
    assert "shpeft-ts (r=1e-4)" not in rows  # ablation-only variants live in the ablation table
    assert rows["full"] == ["100%", shown([80, 82, 84]), shown([70, 72, 74]), shown([75, 77, 79])]
    assert rows["linear"][0] == "0%"
    # seed 2 failed on chaoyang: the Average's std and interval are over the per-seed averages of seeds 0, 1
    assert rows["lora (r=1e-4)"] == ["0.011%", shown([81, 83, 85]), shown([71, 73]) + " (2/3)",
                                     shown([76, 78], mean=77.5)]
    assert rows["lora (native)"][0] == "0.3%"
    assert rows["lora (r=1e-3)"][1:] == ["corrupt", "—", "—"]
    assert rows["spt (r=1e-4)"] == ["0.01%", "failed", shown([60, 61, 62]), shown([60, 61, 62]) + "*"]
    assert rows["vpt-deep (r=1e-5)"][1:3] == ["n/a (unreachable)", "n/a (unreachable)"]


def test_bold_marks_the_best_per_column(df):
    _, table = main_table(main_methods(df), "macro_f1", DATASETS)
    bold = {table.header[j]: [r[0].text for r in table.rows if r[j].bold] for j in range(2, len(table.header))}
    assert bold == {"covid_ct": ["shpeft (r=1e-3)"], "chaoyang": ["shpeft (r=1e-4)"], AVERAGE: ["shpeft (r=1e-3)"]}


def test_ties_after_rounding_are_all_bold_and_incomplete_averages_never(tmp_path):
    root = tmp_path / "runs"
    for seed in range(2):
        write(root, run_json("a", "m1", 1e-4, seed, 1e-4, 0.8001))
        write(root, run_json("a", "m2", 1e-4, seed, 1e-4, 0.7996))
        write(root, run_json("b", "m1", 1e-4, seed, 1e-4, 0.5))
        write(root, run_json("b", "m2", 1e-4, seed, 1e-4, 0.5))
        write(root, run_json("a", "m3", 1e-4, seed, 1e-4, 0.9))  # best on a, but no result on b
    long = summarize(load_runs(root), "macro_f1")
    best = long[long["best"]].groupby("dataset")["method"].agg(sorted).to_dict()
    assert best == {"a": ["m3"], "b": ["m1", "m2"], AVERAGE: ["m1", "m2"]}
    assert cell(long, "m3 (r=1e-4)", AVERAGE)["state"] == "incomplete"


def test_one_ratio_per_method_filter(df, tmp_path):
    write_tables(df, tmp_path, datasets=DATASETS, ratio=1e-4)
    wide = pd.read_csv(tmp_path / "main_macro_f1.csv")
    assert wide["method"].is_unique
    assert wide.set_index("method")["ratio_tag"].astype(str).to_dict()["lora"] == "0.0001"


def test_paper_comparison_difference_is_ours_minus_paper(df):
    comp, table = paper_comparison(df, statuses={"chaoyang": "likely"})
    comp = comp.set_index("dataset")
    for dataset, paper in [("covid_ct", 83.0), ("chaoyang", 80.6)]:
        ours = statistics.mean(ok_values("shpeft", 1e-4, dataset))
        assert comp.loc[dataset, "paper"] == paper
        assert comp.loc[dataset, "difference"] == pytest.approx(ours - paper)
    assert comp["status"].to_dict() == {"covid_ct": "confirmed", "chaoyang": "likely", "busi": "confirmed"}
    assert pd.isna(comp.loc["busi", "difference"])
    texts = {r[1].text: [c.text for c in r] for r in table.rows}
    assert texts["covid_ct"][-1] == "+1.0" and texts["chaoyang"][-1] == "-0.6"
    assert texts["busi"][3:5] == ["not reported", "—"]


def test_paper_comparison_lists_our_extra_datasets(tmp_path):
    root = tmp_path / "runs"
    write(root, run_json("standin-derma", "shpeft", 1e-4, 0, 1e-4, 0.7))
    comp, _ = paper_comparison(load_runs(root), statuses={"standin-derma": "stand-in"})
    row = comp.set_index("dataset").loc["standin-derma"]
    assert (row["status"], row["ours_mean"]) == ("stand-in", pytest.approx(70.0)) and pd.isna(row["paper"])


def test_reference_data():
    ref = load_reference().set_index("dataset")
    assert ref.loc["covid_ct", "value"] == 83.0 and ref.loc["chaoyang", "value"] == 80.6
    assert pd.isna(ref.loc["busi", "value"]) and set(ref["method"]) == {"shpeft"}
    assert dataset_statuses({"busi": "likely"}) == {"covid_ct": "confirmed", "chaoyang": "confirmed", "busi": "likely"}


def test_ablation_rows_are_the_paper_method_and_its_variants_at_their_ratio(df):
    long, table = ablation_table(df, "macro_f1", DATASETS)
    assert [[c.text for c in r[:2]] for r in table.rows] == [
        ["shpeft", "1e-4"], ["shpeft-ta-l2", "1e-4"], ["shpeft-ts", "1e-4"]]
    ts = cell(long, "shpeft-ts (r=1e-4)", "covid_ct")
    assert ts["mean"] == pytest.approx(71.0) and ts["std"] == pytest.approx(1.0)
    assert cell(long, "shpeft (r=1e-4)", "covid_ct")["best"]
    _, table = ablation_table(df, "macro_f1", DATASETS, order=["shpeft-ts", "shpeft"])
    assert [r[0].text for r in table.rows] == ["shpeft-ts", "shpeft", "shpeft-ta-l2"]


def test_ablation_methods_and_ratio_come_from_the_runs(tmp_path):
    root = tmp_path / "runs"
    for method, ratio in [("m", 1e-3), ("m", 1e-2), ("m", None), ("m-a", 1e-2), ("m-b", 1e-2), ("mx", 1e-3)]:
        write(root, run_json("d", method, ratio, 0, ratio or 1e-4, 0.5))
    df = load_runs(root)
    assert ablation_methods(df, "m") == ["m", "m-a", "m-b"]  # 'mx' is another method
    assert ablation_ratio(df, "m") == 1e-2  # where the variants ran
    assert ablation_ratio(df[df["method"].isin(["m", "mx"])], "m") is None  # no variants: m's native size
    assert ablation_ratio(df[(df["method"] == "m") & df["ratio"].notna()], "m") == 1e-3  # tie: the smallest
    assert set(main_methods(df, "m")["method"]) == {"m", "mx"}


def test_write_tables_files_parse(df, tmp_path):
    paths = write_tables(df, tmp_path, datasets=DATASETS)
    names = {p.name for p in paths}
    for stem in ("main_macro_f1", "main_accuracy", "ablation_macro_f1", "ablation_accuracy"):
        assert {f"{stem}.csv", f"{stem}_long.csv", f"{stem}.md", f"{stem}.tex"} <= names
    assert {"paper_comparison.csv", "paper_comparison.md", "paper_comparison.tex", "runs.csv",
            "selected_hparams.csv", "paired_vs_shpeft.csv", "paired_vs_shpeft.md", "paired_vs_shpeft.tex"} <= names
    paired = {line.split(" | ")[0]: line for line in (tmp_path / "paired_vs_shpeft.md").read_text().splitlines()}
    diffs = [-2, -1, 0, -8, -7]  # lora − shpeft at 1e-4: covid_ct seeds 0-2, chaoyang seeds 0-1 (seed 2 failed)
    low, high = stats.t.interval(0.95, 4, loc=statistics.mean(diffs), scale=statistics.stdev(diffs) / 5 ** 0.5)
    assert paired["| lora (r=1e-4)"].endswith(f"| 1e-4 | 5 | {statistics.mean(diffs):+.1f} [{low:+.1f}, {high:+.1f}] |")
    assert all(p.exists() and p.stat().st_size for p in paths)

    wide = pd.read_csv(tmp_path / "main_macro_f1.csv").set_index("label")
    assert wide.loc["full", "covid_ct_mean"] == pytest.approx(82.0)
    assert wide.loc["full", "covid_ct_ci_high"] == pytest.approx(82.0 + stats.t.ppf(0.975, 2) * 2 / 3 ** 0.5)
    assert wide.loc["full", "trainable_pct"] == pytest.approx(100.0)
    long = pd.read_csv(tmp_path / "main_accuracy_long.csv")
    assert set(long["dataset"]) == {*DATASETS, AVERAGE} and long["best"].dtype == bool
    comp = pd.read_csv(tmp_path / "paper_comparison.csv").set_index("dataset")
    assert comp.loc["covid_ct", "difference"] == pytest.approx(1.0)
    assert len(pd.read_csv(tmp_path / "runs.csv")) == len(df)

    md = (tmp_path / "main_macro_f1.md").read_text().splitlines()
    rows = [line for line in md if line.startswith("|")]
    assert len({line.count(" | ") for line in rows[2:] + rows[:1]}) == 1
    assert any("**86.0 ± 1.0 [83.5, 88.5]**" in line and line.startswith("| shpeft (r=1e-3)") for line in rows)
    assert sum("**" in line for line in rows) == 2  # shpeft r=1e-3 (covid_ct, Average), shpeft r=1e-4 (chaoyang)

    tex = (tmp_path / "main_macro_f1.tex").read_text()
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 9 and all(re.sub(r"\\&", "", line).count("&") == 4 for line in body)
    assert r"\textbf{86.0 $\pm$ 1.0 [83.5, 88.5]}" in tex and r"covid\_ct" in tex and r"0.011\%" in tex


def test_empty_results_do_not_crash(tmp_path):
    paths = write_tables(load_runs([]), tmp_path)
    assert (tmp_path / "main_macro_f1.md").exists() and (tmp_path / "paper_comparison.csv") in paths


def test_formatting_helpers():
    assert [fmt_percent(r) for r in (1.0, 1e-4, 1.23e-4, 0.0)] == ["100%", "0.01%", "0.012%", "0%"]
    assert [fmt_ratio(t) for t in ("0.0001", "1e-05", "0.0025", "native")] == ["1e-4", "1e-5", "2.5e-3", "native"]


def test_metric_no_run_recorded_is_a_state_not_a_crash(df):
    long = summarize(df, "macro_auc_missing", DATASETS)
    assert set(long.loc[long["dataset"] == "covid_ct", "state"]) >= {"no metric"}


def test_a_recorded_deviation_from_the_reference_code_is_a_note_of_the_main_table(tmp_path):
    root = tmp_path / "runs"
    for method, deviations in (("spt", "qkv fused"), ("lora", "")):
        result = run_json("covid_ct", method, 1e-4, 0, 1e-4, 0.8)
        result["recipe"] = {"lr": 1e-3, "source": "x", "deviations": deviations}
        write(root, result)
    write(root, run_json("covid_ct", "shpeft", 1e-4, 0, 1e-4, 0.8))  # an older file without a recipe
    notes = main_table(load_runs(root))[1].notes
    assert [n for n in notes if n.startswith(("spt", "lora", "shpeft"))] == ["spt: qkv fused"]


def test_a_method_trained_on_another_schedule_is_a_note_of_the_main_table(tmp_path):
    root = tmp_path / "runs"
    for method, seed, epochs in (("vpt-deep", 0, 12), ("vpt-deep", 1, 12), ("lora", 0, 6), ("lora", 1, 6),
                                 ("spt", 0, 6)):
        result = run_json("covid_ct", method, 1e-2, seed, 1e-2, 0.8)
        result["hparams"] = {"epochs": epochs, "batch_size": 32}
        write(root, result)
    write(root, run_json("covid_ct", "bitfit", None, 0, 1e-3, None, status="failed"))  # no hparams: no note
    notes = main_table(load_runs(root))[1].notes
    assert [n for n in notes if "protocol deviation" in n] == [
        "† vpt-deep: protocol deviation, not in the claims: epochs 12 (most runs: 6)"]
