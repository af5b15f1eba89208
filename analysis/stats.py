"""Statistics over seeds: Student-t 95% confidence intervals, and paired differences of every method
to a reference method on the same (dataset, seed)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.values import NATIVE

CONFIDENCE = 0.95
ALL_DATASETS = "All"  # the paired row pooled over every dataset's (dataset, seed) pairs
PAIRED_COLUMNS = ["backbone", "method", "ratio_tag", "dataset", "reference", "reference_ratio_tag", "ratio_match",
                  "n_pairs", "mean_diff", "std_diff", "ci_low", "ci_high"]


def ci_half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student-t interval of a mean of ``n`` values with sample std ``std`` (NaN if n < 2)."""
    if n < 2 or np.isnan(std):
        return np.nan
    return float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / np.sqrt(n))


def mean_ci(values: pd.Series | np.ndarray) -> dict:
    """Mean, sample std, n and the 95% interval (ci_low, ci_high) of ``values``."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = values.mean() if n else np.nan
    std = values.std(ddof=1) if n > 1 else np.nan
    half = ci_half_width(std, n)
    return {"mean": mean, "std": std, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def _log_position(ratio_tag: str, achieved: float) -> float:
    """Where a row sits on the log ratio axis: its target ratio, or for a native size its achieved ratio
    (0, linear probing, is placed at the smallest positive float: left of every ratio)."""
    ratio = achieved if ratio_tag == NATIVE else float(ratio_tag)
    return float(np.log(max(ratio, np.finfo(float).tiny)))


def closest_ratio(ratio_tag: str, achieved: float, candidates: pd.DataFrame) -> str:
    """The candidate ratio tag (columns ratio_tag, achieved) equal to ``ratio_tag``, else the closest in log space."""
    if ratio_tag in set(candidates["ratio_tag"]):
        return ratio_tag
    where = _log_position(ratio_tag, achieved)
    gaps = [abs(_log_position(t, a) - where) for t, a in candidates[["ratio_tag", "achieved"]].itertuples(index=False)]
    return candidates["ratio_tag"].iloc[int(np.argmin(gaps))]


def _paired_row(key: dict, diffs: np.ndarray) -> dict:
    summary = mean_ci(diffs)
    return {**key, "n_pairs": summary["n"], "mean_diff": summary["mean"], "std_diff": summary["std"],
            "ci_low": summary["ci_low"], "ci_high": summary["ci_high"]}


def paired_vs_reference(df: pd.DataFrame, reference: str, metric: str = "macro_f1") -> pd.DataFrame:
    """Per (backbone, method, ratio) and dataset (+ ``All``, pooled): the paired difference method −
    ``reference`` of the test metric (percentage points) over the seeds both finished, against the
    reference at the same ratio or, if it has none there, its closest ratio in log space."""
    col = f"test.{metric}"
    ok = df[df["status"].eq("ok") & df[col].notna()].assign(achieved=lambda d: d["budget.achieved_ratio"])
    ref = ok[ok["method"] == reference]
    rows = []
    for (backbone, method, tag), runs in ok[ok["method"] != reference].groupby(["backbone", "method", "ratio_tag"]):
        key = {"backbone": backbone, "method": method, "ratio_tag": tag, "reference": reference}
        pooled, matched = [], []
        for dataset, own in runs.groupby("dataset"):
            theirs = ref[(ref["dataset"] == dataset) & (ref["backbone"] == backbone)]
            if theirs.empty:
                continue
            ratios = theirs.groupby("ratio_tag", as_index=False)["achieved"].mean()
            ref_tag = closest_ratio(tag, own["achieved"].mean(), ratios)
            pairs = own[["seed", col]].merge(theirs.loc[theirs["ratio_tag"] == ref_tag, ["seed", col]], on="seed",
                                             suffixes=("", "_ref"))
            diffs = (pairs[col] - pairs[f"{col}_ref"]).to_numpy() * 100
            match = "equal" if ref_tag == tag else "closest (log ratio)"
            rows.append(_paired_row({**key, "dataset": dataset, "reference_ratio_tag": ref_tag, "ratio_match": match},
                                    diffs))
            pooled.append(diffs)
            matched.append((ref_tag, match))
        if pooled:
            tags, matches = ("; ".join(dict.fromkeys(x)) for x in zip(*matched))
            rows.append(_paired_row({**key, "dataset": ALL_DATASETS, "reference_ratio_tag": tags,
                                     "ratio_match": matches}, np.concatenate(pooled)))
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


# --- tests of declared claims (analysis.claims): one-sample t on paired values, Holm over the family -------

def t_test(values: np.ndarray, null: float) -> dict:
    """Two-sided one-sample t-test of ``mean(values) == null`` (paired differences, or per-pair values):
    n, mean, sd, standard error, t, p (t and p NaN with fewer than two values, or with no variance between
    them: the test is undefined there, not decisive)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = values.mean() if n else np.nan
    sd = values.std(ddof=1) if n > 1 else np.nan
    se = sd / np.sqrt(n) if n > 1 else np.nan
    if n < 2 or se == 0:
        t = p = np.nan
    else:
        t = (mean - null) / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
    return {"n": n, "mean": mean, "sd": sd, "se": se, "t": t, "p": p}


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' step-down procedure; NaN stays NaN, outside the family)."""
    from statsmodels.stats.multitest import multipletests

    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p_values, np.nan)
    tested = ~np.isnan(p_values)
    if tested.any():
        adjusted[tested] = multipletests(p_values[tested], method="holm")[1]
    return adjusted


def adjusted_confidence(p: float, p_adjusted: float, alpha: float, family: int) -> float:
    """The confidence level whose interval excludes the null exactly when the Holm-adjusted p-value is below
    ``alpha``: 1 - alpha * p / p_adjusted (Bonferroni's 1 - alpha / family for p = 0)."""
    if np.isnan(p) or np.isnan(p_adjusted):
        return np.nan
    level = alpha / family if p == 0 or p_adjusted == 0 else alpha * p / p_adjusted
    return 1 - level


def t_interval(mean: float, se: float, n: int, confidence: float) -> tuple[float, float]:
    """The Student-t interval of a mean at ``confidence`` (NaNs when undefined)."""
    if n < 2 or np.isnan(confidence) or np.isnan(se):
        return np.nan, np.nan
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * se
    return mean - half, mean + half


def detectable_effect(n: int, sd: float, alpha: float, power: float) -> float:
    """The smallest true effect (in the values' units) a two-sided paired t-test of ``n`` pairs with
    standard deviation ``sd`` detects with ``power`` at level ``alpha`` (statsmodels' TTestPower)."""
    if n < 2 or np.isnan(sd):
        return np.nan
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power)) * sd
