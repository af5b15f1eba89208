"""Confidence intervals and paired differences (analysis.stats) against brute-force references."""
import numpy as np
import pytest
from scipy import stats

from analysis.results import load_runs
from analysis.stats import ALL_DATASETS, ci_half_width, mean_ci, paired_vs_reference

from .conftest import GRID


def test_interval_is_scipys_student_t_interval():
    values = np.array([0.81, 0.79, 0.86, 0.84])
    got = mean_ci(values)
    low, high = stats.t.interval(0.95, 3, loc=values.mean(), scale=stats.sem(values))
    assert (got["ci_low"], got["ci_high"], got["n"]) == (pytest.approx(low), pytest.approx(high), 4)
    assert np.isnan(mean_ci([0.5])["ci_low"]) and np.isnan(ci_half_width(1.0, 1))


def _pairs(method, ratio, ref_ratio, dataset):
    own, ref = GRID[(method, ratio)][1][dataset], GRID[("shpeft", ref_ratio)][1][dataset]
    return [100 * (a - b) for a, b in zip(own, ref) if a is not None and b is not None]


def test_paired_differences_match_hand_pairing(runs_dir):
    paired = paired_vs_reference(load_runs(runs_dir), "shpeft").set_index(["method", "ratio_tag", "dataset"])
    assert "shpeft" not in paired.index.get_level_values("method")
    # (method, ratio) -> the shpeft ratio it is paired with: equal, or closest in log space
    for (method, ratio, tag), ref_ratio, match in [
        (("lora", 1e-4, "0.0001"), 1e-4, "equal"),
        (("lora", None, "native"), 1e-3, "closest (log ratio)"),  # achieved 3e-3: closer to 1e-3 than 1e-4
        (("full", None, "native"), 1e-3, "closest (log ratio)"),
        (("linear", None, "native"), 1e-4, "closest (log ratio)"),  # achieved 0: the smallest ratio
    ]:
        pooled = []
        for dataset in ("covid_ct", "chaoyang"):
            diffs = _pairs(method, ratio, ref_ratio, dataset)
            row = paired.loc[(method, tag, dataset)]
            assert (row["reference_ratio_tag"], row["ratio_match"]) == (f"{ref_ratio:g}", match)
            assert row["n_pairs"] == len(diffs) and row["mean_diff"] == pytest.approx(np.mean(diffs))
            sem = stats.sem(diffs)  # 0 for lora native on covid_ct (-1 on every seed): scipy gives NaN there
            low, high = ([np.mean(diffs)] * 2 if not sem else
                         stats.t.interval(0.95, len(diffs) - 1, loc=np.mean(diffs), scale=sem))
            assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
            pooled += diffs
        row = paired.loc[(method, tag, ALL_DATASETS)]
        assert row["n_pairs"] == len(pooled) and row["mean_diff"] == pytest.approx(np.mean(pooled))
    assert paired.loc[("lora", "0.0001", "chaoyang"), "n_pairs"] == 2  # seed 2 failed: no pair
    assert ("spt", "0.0001", "covid_ct") not in paired.index  # no finished run there
