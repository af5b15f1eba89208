"""The paper's claims as tests declared in the study config before the run (``claims:``), with verdicts
computed here, never written by hand.

Each declared test becomes one or more comparisons:

* ``paired``: ``method`` minus ``versus`` on the test metric (percentage points), paired by (dataset,
  seed), at each declared ``ratio``. ``versus`` at the same ratio counts only when both achieved ratios
  are within the solver's tolerance of it (the results record it): other pairs are listed as
  "unmatched ratio". A ``versus_ratio`` (e.g. full fine-tuning's ``native``) compares across sizes on
  purpose. The claim is ``method >= versus - margin``.
* ``sparsity``: per fully fine-tuned model (dataset, seed), the share of fine-tuning's gain over the
  reverted model that the top ``keep_fraction`` |dw| changes restore; the claim is share > ``share``.
* ``hybridity``: per model, how much the top-k |dw| (k = ``ratio``) overlaps the task-specific top-k and
  the task-agnostic top-k beyond the k / N of random sets (two comparisons, both must hold).

Every comparison is a two-sided one-sample t-test of its per-pair values against the claim's boundary
(-margin, the declared share, chance); the p-values are Holm-adjusted over the whole family of tested
comparisons (all claims), and each interval is drawn at the confidence that makes it exclude the boundary
exactly when the Holm-adjusted p is below alpha. Verdict (the rule, in :func:`verdict`): adjusted p < alpha
and the effect above the boundary -> supported; below it -> refuted; else inconclusive. A claim is
supported when all its comparisons are, refuted when any is, else inconclusive. Comparisons that involve a
protocol deviation (analysis.protocol) are listed but left out of the family. The detectable effect is the
smallest true difference from the boundary the design detects with the declared power at the family's
Bonferroni level alpha / m (the most conservative Holm step).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.protocol import confounds, deviations, rows_of
from analysis.render import Cell, Table
from analysis.stats import adjusted_confidence, detectable_effect, holm, t_interval, t_test
from benchmark.paths import ratio_tag
from benchmark.values import NATIVE

CLAIMS = "claims"  # the file stem of the claims table (tables/claims.csv|md|tex)
VERDICTS = ("supported", "refuted", "inconclusive")
TESTED, UNMATCHED, DEVIATION, NO_DATA = "tested", "unmatched ratio", "protocol deviation", "too few pairs"
NO_VARIANCE = "no variance between pairs"
COLUMNS = ["claim_id", "claim", "comparison", "status", "n", "null", "effect", "sd", "p", "p_holm", "confidence",
           "ci_low", "ci_high", "detectable_effect", "verdict", "unit", "confounds"]
CLAIM_COLUMNS = ["claim_id", "claim", "verdict", "comparisons", "tested", "deciding", "n", "null", "effect",
                 "ci_low", "ci_high", "confidence", "p_holm", "detectable_effect", "unit", "confounds"]


@dataclass
class Comparison:
    """One tested (or untestable) contrast of a claim: its per-pair values and the boundary."""

    claim_id: str
    claim: str
    label: str
    values: np.ndarray
    null: float
    unit: str
    status: str = TESTED
    confounds: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


def verdict(p_holm: float, effect: float, null: float, alpha: float) -> str:
    """The verdict rule: decided when the Holm-adjusted p is below ``alpha``, in the direction of the effect."""
    if np.isnan(p_holm) or p_holm >= alpha:
        return "inconclusive"
    return "supported" if effect > null else "refuted"


def claim_verdict(verdicts: Sequence[str]) -> str:
    """All comparisons supported -> supported; any refuted -> refuted; else inconclusive ('not testable'
    when none was tested)."""
    if not verdicts:
        return "not testable"
    if "refuted" in verdicts:
        return "refuted"
    return "supported" if all(v == "supported" for v in verdicts) else "inconclusive"


# --- the comparisons of each kind ---------------------------------------------------------------------------

def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _matched(rows: pd.DataFrame, ratio: float) -> bool:
    """Every run achieved ``ratio`` within the tolerance its result records (absent: unmatched)."""
    ok = rows[rows["status"] == "ok"]
    if ok.empty or "budget.tolerance" not in ok.columns or ok["budget.tolerance"].isna().any():
        return False
    return bool((abs(ok["budget.achieved_ratio"] / ratio - 1) <= ok["budget.tolerance"]).all())


def _versus(test: Mapping[str, Any], methods: Sequence[str]) -> list[str]:
    versus = test.get("versus")
    if versus == "*":
        skip = {test["method"], *test.get("exclude", [])}
        return [m for m in methods if m not in skip and not m.startswith(f"{test['method']}-")]
    return _as_list(versus)


def paired_comparisons(test: Mapping[str, Any], runs: pd.DataFrame, choices: pd.DataFrame, methods: Sequence[str],
                       deviating: Mapping[str, str], metric: str) -> list[Comparison]:
    col = f"test.{metric}"
    out = []
    for ratio in _as_list(test["ratio"]):
        own = rows_of(runs, test["method"], [ratio_tag(ratio)])
        for other in _versus(test, methods):
            across = test.get("versus_ratio")
            tags = [ratio_tag(None if across == NATIVE else across)] if across is not None else [ratio_tag(ratio), NATIVE]
            theirs = rows_of(runs, other, tags)
            theirs = theirs[theirs["ratio_tag"] == tags[0]] if (theirs["ratio_tag"] == tags[0]).any() else theirs
            label = f"{test['method']} @{ratio:g} vs {other}" + ("" if theirs.empty else f" @{theirs['ratio_tag'].iloc[0]}")
            pairs = (own[own["status"] == "ok"][["dataset", "seed", col]]
                     .merge(theirs[theirs["status"] == "ok"][["dataset", "seed", col]], on=["dataset", "seed"],
                            suffixes=("", "_versus")))
            values = ((pairs[col] - pairs[f"{col}_versus"]) * 100).to_numpy()
            status = TESTED
            if across is None and not (_matched(own, ratio) and _matched(theirs, ratio)):
                status = UNMATCHED
            elif test["method"] in deviating or other in deviating:
                status = DEVIATION
            mine = choices[(choices["method"] == test["method"]) & choices["ratio_tag"].isin([ratio_tag(ratio)])]
            yours = choices[(choices["method"] == other) & choices["ratio_tag"].isin(theirs["ratio_tag"].unique())]
            out.append(Comparison(test["id"], test["claim"], label, values, -float(test.get("margin", 0)),
                                  f"points of test {metric}", status, confounds(own, theirs, mine, yours, deviating)))
    return out


def sparsity_comparisons(test: Mapping[str, Any], sparsity: Path) -> list[Comparison]:
    """The restored share per fine-tuned model: (F1 with the top-p changes - reverted) / (fine-tuned - reverted)."""
    keep = pd.read_csv(sparsity / "keep_top.csv")
    wide = keep.pivot_table(index=["dataset", "seed"], columns=["setting", "keep_fraction"], values="macro_f1")
    top = wide.get(("top-p", float(test["keep_fraction"])))
    label = f"top {test['keep_fraction']:g} of |dw| restores > {test['share']:g} of the gain"
    if top is None:
        return [Comparison(test["id"], test["claim"], f"{label} (keep fraction not measured)", np.array([]),
                           100 * test["share"], "points of share", NO_DATA)]
    reverted, tuned = wide[("reverted", 0.0)], wide[("fine-tuned", 1.0)]
    gain = tuned - reverted
    share = ((top - reverted) / gain)[gain > 0]  # a model that gained nothing has no share to restore
    return [Comparison(test["id"], test["claim"], label, share.to_numpy() * 100, 100 * test["share"],
                       "points of share")]


def hybridity_comparisons(test: Mapping[str, Any], sparsity: Path) -> list[Comparison]:
    """The overlap of the top-k |dw| with each importance ranking, beyond random sets (k / N)."""
    table = pd.read_csv(sparsity / "hybridity.csv")
    table = table[np.isclose(table["ratio"], float(test["ratio"]))]
    return [Comparison(test["id"], test["claim"], f"top-k |dw| overlaps the {name} top-k beyond chance",
                       ((table[f"overlap_{key}"] - table["random_expected"]) * 100).to_numpy(), 0.0,
                       "points of overlap", TESTED if len(table) else NO_DATA)
            for key, name in (("task_specific", "task-specific"), ("task_agnostic", "task-agnostic"))]


# --- the family ------------------------------------------------------------------------------------------

def evaluate(comparisons: list[Comparison], alpha: float, power: float) -> list[Comparison]:
    """t-test each tested comparison, Holm over the family, intervals, detectable effects, verdicts."""
    for c in comparisons:
        c.stats = t_test(c.values, c.null)
        if c.status == TESTED and c.stats["n"] < 2:
            c.status = NO_DATA
        elif c.status == TESTED and np.isnan(c.stats["p"]):
            c.status = NO_VARIANCE
    family = [c for c in comparisons if c.status == TESTED]
    adjusted = holm(np.array([c.stats["p"] for c in family]))
    for c, p_holm in zip(family, adjusted):
        confidence = adjusted_confidence(c.stats["p"], p_holm, alpha, len(family))
        low, high = t_interval(c.stats["mean"], c.stats["se"], c.stats["n"], confidence)
        c.stats.update(p_holm=p_holm, confidence=confidence, ci_low=low, ci_high=high,
                       detectable=detectable_effect(c.stats["n"], c.stats["sd"], alpha / len(family), power),
                       verdict=verdict(p_holm, c.stats["mean"], c.null, alpha))
    for c in comparisons:
        if c.status != TESTED:
            c.stats.setdefault("verdict", f"not tested: {c.status}")
    return comparisons


def comparison_table(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    rows = [{"claim_id": c.claim_id, "claim": c.claim, "comparison": c.label, "status": c.status, "n": c.stats["n"],
             "null": c.null, "effect": c.stats["mean"], "sd": c.stats["sd"], "p": c.stats["p"],
             "p_holm": c.stats.get("p_holm", np.nan), "confidence": c.stats.get("confidence", np.nan),
             "ci_low": c.stats.get("ci_low", np.nan), "ci_high": c.stats.get("ci_high", np.nan),
             "detectable_effect": c.stats.get("detectable", np.nan), "verdict": c.stats["verdict"], "unit": c.unit,
             "confounds": c.confounds} for c in comparisons]
    return pd.DataFrame(rows, columns=COLUMNS)


def claim_table(tests: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its verdict and the tested comparison least favourable to it (smallest effect
    above the boundary), whose numbers the row shows."""
    rows = []
    for claim_id, group in tests.groupby("claim_id", sort=False):
        tested = group[group["status"] == TESTED]
        deciding = tested.loc[(tested["effect"] - tested["null"]).idxmin()] if len(tested) else None
        row = {"claim_id": claim_id, "claim": group["claim"].iloc[0],
               "verdict": claim_verdict(list(tested["verdict"])), "comparisons": len(group), "tested": len(tested)}
        if deciding is not None:
            row.update({"deciding": deciding["comparison"], **{k: deciding[k] for k in (
                "n", "null", "effect", "ci_low", "ci_high", "confidence", "p_holm", "detectable_effect", "unit",
                "confounds")}})
        rows.append(row)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


MODEL_KINDS = {"sparsity": sparsity_comparisons, "hybridity": hybridity_comparisons}  # read the sparsity CSVs


def assess(claims: Mapping[str, Any], runs: pd.DataFrame, choices: pd.DataFrame, sparsity: Path | None,
           study: Mapping[str, Any] | None = None, order: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per claim, one row per comparison) of the declared ``claims`` over the reported runs
    (``runs``: each cell at its chosen lr; ``choices``: analysis.tuning's records)."""
    metric = claims.get("metric", "macro_f1")
    methods = list(dict.fromkeys([*order, *sorted(runs["method"].dropna().unique())]))
    deviating = deviations(runs, study)
    comparisons: list[Comparison] = []
    for test in claims["tests"]:
        if test["kind"] == "paired":
            comparisons += paired_comparisons(test, runs, choices, methods, deviating, metric)
        elif sparsity is None:
            comparisons.append(Comparison(test["id"], test["claim"], "no sparsity analysis", np.array([]), 0.0, "",
                                          NO_DATA))
        else:
            comparisons += MODEL_KINDS[test["kind"]](test, sparsity)
    tests = comparison_table(evaluate(comparisons, claims.get("alpha", 0.05), claims.get("power", 0.8)))
    return claim_table(tests), tests


def _number(value: float, signed: bool = True) -> str:
    return "—" if pd.isna(value) else (f"{value:+.1f}" if signed else f"{value:.1f}")


def claims_markdown_table(claims: pd.DataFrame, alpha: float, power: float, family: int) -> Table:
    rows = [[Cell(r["claim_id"]), Cell(r["claim"]), Cell(r["verdict"], bold=r["verdict"] in VERDICTS[:2]),
             Cell(str(r["deciding"]) if isinstance(r["deciding"], str) else "—"),
             Cell(f"{_number(r['effect'])} vs {_number(r['null'])}" if not pd.isna(r["effect"]) else "—"),
             Cell(f"[{_number(r['ci_low'])}, {_number(r['ci_high'])}]"),
             Cell("—" if pd.isna(r["p_holm"]) else f"{r['p_holm']:.3g}"),
             Cell(_number(r["detectable_effect"], signed=False)), Cell(f"{r['tested']}/{r['comparisons']}"),
             Cell(str(r["confounds"]) if isinstance(r["confounds"], str) and r["confounds"] else "none")]
            for _, r in claims.iterrows()]
    caption = ("The paper's claims, tested as declared in the study config before the run: verdicts computed "
               "by analysis/claims.py")
    notes = [f"effect vs boundary: the mean over (dataset, seed) pairs of the comparison least favourable to the "
             f"claim, against the value the claim must exceed; interval: Holm-adjusted over the {family} tested "
             f"comparisons of the family (alpha {alpha:g}); p: Holm-adjusted",
             f"detectable: the smallest true difference from the boundary this design detects with power {power:g} "
             f"at alpha / {family} (paired t-test)",
             "supported: adjusted p < alpha with the effect above the boundary; refuted: below it; inconclusive "
             "otherwise; a claim of several comparisons needs all of them (claim_tests.csv lists each, with "
             "unmatched-ratio pairs and protocol deviations left out of the family)"]
    return Table(["Claim", "Statement", "Verdict", "Deciding comparison", "Effect vs boundary", "Adjusted CI",
                  "p (Holm)", "Detectable", "Tested", "Confounds"], rows, caption, notes, n_index=2)
