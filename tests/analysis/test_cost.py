"""The cost table flags the cells whose wall time says they ran beside other work."""
import statistics

import numpy as np
import pandas as pd

from analysis.cost import SLOWED_FACTOR, SLOWED_MIN_GROUP, cost_markdown_table, cost_table, slowed_cells
from analysis.render import to_markdown

COLUMNS = ["path", "status", "dataset", "backbone", "method", "ratio_tag", "perf.wall_s"]


def runs_frame(seed: int = 0) -> pd.DataFrame:
    """Groups of 1-6 cells of random wall times, some far above their group's typical time; an unreachable cell
    with a huge time must never count."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in ("busi", "covid_ct"):
        for method, ratio in (("full", "native"), ("lora", "0.01"), ("shpeft", "0.0001")):
            for i in range(int(rng.integers(1, 7))):
                wall = float(rng.uniform(30, 60) * (rng.choice([1, 1, 1, 5])))
                rows.append((f"results/runs/{dataset}/b/{method}/r{ratio}/s{i}.json", "ok", dataset, "b", method,
                             ratio, wall))
    rows.append(("results/runs/busi/b/lora/r0.0001/s0.json", "unreachable", "busi", "b", "lora", "0.0001", 1e6))
    return pd.DataFrame(rows, columns=COLUMNS)


def brute_force(runs: pd.DataFrame) -> set[str]:
    slowed = set()
    for _, row in runs.iterrows():
        group = runs[(runs.status == "ok") & (runs.dataset == row.dataset) & (runs.backbone == row.backbone)
                     & (runs.method == row.method) & (runs.ratio_tag == row.ratio_tag)]
        if row.status == "ok" and len(group) >= SLOWED_MIN_GROUP:
            if row["perf.wall_s"] > SLOWED_FACTOR * statistics.median(group["perf.wall_s"]):
                slowed.add(row.path)
    return slowed


def test_slowed_cells_match_the_brute_force() -> None:
    found = 0
    for seed in range(20):
        runs = runs_frame(seed)
        got = slowed_cells(runs)
        assert set(got["path"]) == brute_force(runs)
        found += len(got)
    assert found > 0  # the random groups did produce slowed cells to compare


def test_a_group_too_small_for_a_median_flags_nothing() -> None:
    runs = pd.DataFrame([("a.json", "ok", "busi", "b", "full", "native", 10.0),
                         ("b.json", "ok", "busi", "b", "full", "native", 500.0)], columns=COLUMNS)
    assert slowed_cells(runs).empty


def test_the_cost_table_counts_each_methods_slowed_cells() -> None:
    runs = runs_frame(3)
    benchmarks = pd.DataFrame({"cell": runs["path"].str.split("/runs/").str[-1], "job_s": 1.0, "max_rss_mb": 100.0})
    table = cost_table(runs.assign(path="/x/runs/" + runs["path"].str.split("/runs/").str[-1]), benchmarks)
    expected = pd.Series([p.split("/")[4] for p in brute_force(runs)]).value_counts()
    assert table.set_index("method")["slowed"].to_dict() == {m: int(expected.get(m, 0)) for m in table["method"]}
    markdown = to_markdown(cost_markdown_table(table))
    assert "| Slowed |" in markdown and f"{SLOWED_FACTOR:g}x the median" in markdown
