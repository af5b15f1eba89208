"""analysis.claims: the declared claims' comparisons, Holm over the family, intervals, detectable effects and
verdicts, each checked against a hand computation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.claims import assess, claim_verdict, verdict
from analysis.stats import adjusted_confidence, detectable_effect, holm, t_interval, t_test

SEEDS, DATASETS = (0, 1, 2), ("busi", "covid_ct")


def runs(rows: dict[tuple[str, str], list[float]], achieved: dict[tuple[str, str], float] | None = None,
         epochs: dict[str, int] | None = None) -> pd.DataFrame:
    """Reported runs: (method, ratio tag) -> test macro-F1 per (dataset, seed), in DATASETS x SEEDS order."""
    records = []
    for (method, tag), values in rows.items():
        pairs = [(d, s) for d in DATASETS for s in SEEDS]
        for (dataset, seed), value in zip(pairs, values):
            ratio = None if tag == "native" else float(tag)
            records.append({"dataset": dataset, "seed": seed, "method": method, "ratio_tag": tag, "status": "ok",
                            "backbone": "b", "test.macro_f1": value,
                            "budget.achieved_ratio": (achieved or {}).get((method, tag), ratio or 1.0),
                            "budget.tolerance": 0.1, "hparams.epochs": (epochs or {}).get(method, 6),
                            "provenance.git_commit": "abc"})
    return pd.DataFrame(records, columns=["dataset", "seed", "method", "ratio_tag", "status", "backbone",
                                          "test.macro_f1", "budget.achieved_ratio", "budget.tolerance",
                                          "hparams.epochs", "provenance.git_commit"])


CHOICES = pd.DataFrame(columns=["dataset", "backbone", "method", "ratio_tag", "candidate_lrs", "limit_hit"])
BASE = [0.70, 0.72, 0.74, 0.60, 0.61, 0.65]


def shifted(points: list[float]) -> list[float]:
    """BASE moved by ``points`` percentage points per (dataset, seed)."""
    return [b + d / 100 for b, d in zip(BASE, points)]


def test_pure_statistics_match_scipy_and_statsmodels_by_hand():
    values = np.array([1.0, 2.0, 4.0, 3.0])
    t = t_test(values, null=-1.0)
    expected = stats.ttest_1samp(values, -1.0)
    assert t["p"] == pytest.approx(expected.pvalue) and t["t"] == pytest.approx(expected.statistic)
    # Holm by hand: sorted p x (m - rank), running max, capped at 1
    p = np.array([0.01, 0.04, 0.03, np.nan])
    assert holm(p)[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(holm(p)[3])
    # the interval excludes the null exactly when the adjusted p is below alpha
    for raw, adjusted in ((0.01, 0.03), (0.04, 0.06)):
        level = adjusted_confidence(raw, adjusted, 0.05, 3)
        assert level == pytest.approx(1 - 0.05 * raw / adjusted)
    sd = values.std(ddof=1)
    low, high = t_interval(values.mean(), sd / 2, 4, 0.95)
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 3, loc=values.mean(), scale=sd / 2))
    effect = detectable_effect(9, 2.0, 0.05, 0.8)  # by hand: the noncentral t's power at that effect is 0.8
    nc = effect / 2.0 * np.sqrt(9)
    crit = stats.t.ppf(0.975, 8)
    assert stats.nct.sf(crit, 8, nc) + stats.nct.cdf(-crit, 8, nc) == pytest.approx(0.8, abs=1e-4)


def test_the_verdict_rule():
    assert verdict(0.01, 2.0, 0.0, 0.05) == "supported" and verdict(0.01, -2.0, 0.0, 0.05) == "refuted"
    assert verdict(0.2, 5.0, 0.0, 0.05) == "inconclusive" and verdict(np.nan, 5.0, 0.0, 0.05) == "inconclusive"
    assert claim_verdict(["supported", "supported"]) == "supported"
    assert claim_verdict(["supported", "refuted", "inconclusive"]) == "refuted"
    assert claim_verdict(["supported", "inconclusive"]) == "inconclusive" and claim_verdict([]) == "not testable"


def test_paired_claims_pair_by_dataset_and_seed_and_holm_over_the_family():
    reported = runs({
        ("shpeft", "0.001"): shifted([3, 3.2, 2.8, 3.1, 2.9, 3.0]),  # +3 points over ts: clearly ahead
        ("shpeft-ts", "0.001"): BASE,
        ("shpeft-ta", "0.001"): shifted([3.5, 2.7, 3.8, 2.1, 3.2, 2.8]),  # as good as the hybrid
        ("full", "native"): shifted([10, 11, 9, 10, 10.5, 9.5]),  # 7 points ahead of shpeft: beyond the margin
    })
    claims = {"alpha": 0.05, "power": 0.8, "tests": [
        {"id": "C3", "claim": "hybrid > ts", "kind": "paired", "method": "shpeft", "versus": "shpeft-ts", "ratio": 0.001},
        {"id": "C4", "claim": "hybrid > ta", "kind": "paired", "method": "shpeft", "versus": "shpeft-ta", "ratio": 0.001},
        {"id": "C1", "claim": "shpeft >= full", "kind": "paired", "method": "shpeft", "versus": "full",
         "versus_ratio": "native", "ratio": 0.001, "margin": 1.0},
    ]}
    table, tests = assess(claims, reported, CHOICES, None)
    by_id = tests.set_index("claim_id")
    diffs = {cid: [] for cid in ("C3", "C4", "C1")}
    for d in DATASETS:
        for s in SEEDS:
            pick = lambda m: reported[(reported.method == m) & (reported.dataset == d) & (reported.seed == s)]  # noqa: E731
            own = pick("shpeft")["test.macro_f1"].item()
            for cid, other in (("C3", "shpeft-ts"), ("C4", "shpeft-ta"), ("C1", "full")):
                diffs[cid].append((own - pick(other)["test.macro_f1"].item()) * 100)
    raw = {cid: stats.ttest_1samp(v, -1.0 if cid == "C1" else 0.0).pvalue for cid, v in diffs.items()}
    order = sorted(raw, key=raw.get)
    adjusted, running = {}, 0.0
    for rank, cid in enumerate(order):  # Holm by hand
        running = max(running, min(1.0, (len(order) - rank) * raw[cid]))
        adjusted[cid] = running
    for cid in raw:
        assert by_id.loc[cid, "effect"] == pytest.approx(np.mean(diffs[cid]))
        assert by_id.loc[cid, "p_holm"] == pytest.approx(adjusted[cid])
        excludes = not (by_id.loc[cid, "ci_low"] <= by_id.loc[cid, "null"] <= by_id.loc[cid, "ci_high"])
        assert excludes == (adjusted[cid] < 0.05)  # the interval agrees with the adjusted p
    verdicts = table.set_index("claim_id")["verdict"]
    assert verdicts["C3"] == "supported" and verdicts["C4"] == "inconclusive" and verdicts["C1"] == "refuted"


def test_c2_pairs_only_matched_ratios_and_leaves_deviations_out_of_the_family():
    reported = runs({
        ("shpeft", "0.01"): BASE, ("lora", "0.01"): shifted([-1, -2, -1, -2, -1, -2]),
        ("bitfit", "native"): BASE, ("vpt-deep", "0.01"): BASE, ("full", "native"): BASE,
    }, achieved={("bitfit", "native"): 0.0047, ("lora", "0.01"): 0.0104}, epochs={"vpt-deep": 12})
    claims = {"tests": [{"id": "C2", "claim": "shpeft >= PEFT", "kind": "paired", "method": "shpeft", "versus": "*",
                         "exclude": ["full"], "ratio": [0.01], "margin": 2.0}]}
    table, tests = assess(claims, reported, CHOICES, None, order=["full", "bitfit", "lora", "vpt-deep", "shpeft"])
    status = dict(zip(tests["comparison"].str.split(" vs ").str[1].str.split(" ").str[0], tests["status"]))
    assert status == {"bitfit": "unmatched ratio", "lora": "tested", "vpt-deep": "protocol deviation"}
    assert "epochs 12" in tests.loc[tests["status"] == "protocol deviation", "confounds"].item()
    assert table["tested"].item() == 1 and table["verdict"].item() == "supported"  # lora trails by > -2 points


def test_sparsity_and_hybridity_claims_read_the_sparsity_csvs(tmp_path):
    keep, hybrid = [], []
    for i, (dataset, seed) in enumerate((d, s) for d in DATASETS for s in SEEDS):
        reverted, tuned = 0.4, 0.8
        for setting, p, f1 in (("reverted", 0.0, reverted), ("top-p", 0.01, 0.6 + 0.01 * i), ("fine-tuned", 1.0, tuned)):
            keep.append({"dataset": dataset, "seed": seed, "setting": setting, "keep_fraction": p, "macro_f1": f1})
        hybrid.append({"dataset": dataset, "seed": seed, "ratio": 0.001, "random_expected": 0.001,
                       "overlap_task_specific": 0.2 + 0.01 * i, "overlap_task_agnostic": 0.001 + 0.0001 * (i - 2.5)})
    pd.DataFrame(keep).to_csv(tmp_path / "keep_top.csv", index=False)
    pd.DataFrame(hybrid).to_csv(tmp_path / "hybridity.csv", index=False)
    claims = {"tests": [
        {"id": "C5", "claim": "sparse", "kind": "sparsity", "keep_fraction": 0.01, "share": 0.4},
        {"id": "C6", "claim": "hybrid", "kind": "hybridity", "ratio": 0.001}]}
    table, tests = assess(claims, runs({}), CHOICES, tmp_path)
    share = [(0.6 + 0.01 * i - 0.4) / 0.4 * 100 for i in range(6)]
    c5 = tests.set_index("claim_id").loc["C5"]
    assert c5["effect"] == pytest.approx(np.mean(share)) and c5["null"] == 40.0
    c6 = tests[tests["claim_id"] == "C6"].set_index("comparison")
    assert c6["effect"].iloc[0] == pytest.approx(np.mean([(0.2 + 0.01 * i - 0.001) * 100 for i in range(6)]))
    verdicts = table.set_index("claim_id")["verdict"]
    assert verdicts["C5"] == "supported"
    assert verdicts["C6"] == "inconclusive"  # task-specific overlap far above chance, task-agnostic at chance
