"""The coverage table says, for every cell a study declares, which seeds ran and how they ended."""
import itertools

import pandas as pd
import yaml

from analysis.coverage import STATES, coverage_markdown_table, coverage_table
from analysis.render import to_markdown
from analysis.report import write_report
from benchmark.paths import STUDY_RECORD

STUDY = {"datasets": ["busi", "covid_ct"], "seeds": [0, 1, 2],
         "methods": {"full": ["native"], "lora": [0.0001, 0.01]}}


def reported(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["dataset", "method", "ratio_tag", "seed", "status"])


def brute_force(runs: pd.DataFrame, study: dict) -> dict[tuple, dict[str, int]]:
    """Each declared (method, ratio_tag, dataset): count its seeds by the best state of their runs."""
    out = {}
    for method, ratios in study["methods"].items():
        for ratio, dataset in itertools.product(ratios, study["datasets"]):
            tag = "native" if ratio == "native" else f"{ratio:g}"
            counts = dict.fromkeys(STATES, 0)
            for seed in study["seeds"]:
                got = set(runs.loc[(runs.dataset == dataset) & (runs.method == method) & (runs.ratio_tag == tag)
                                   & (runs.seed == seed), "status"])
                counts[next((s for s in STATES if s in got), "missing")] += 1
            out[(method, tag, dataset)] = counts
    return out


def test_every_declared_cell_is_counted_like_the_brute_force() -> None:
    runs = reported([
        ("busi", "full", "native", 0, "ok"), ("busi", "full", "native", 1, "ok"),
        ("busi", "full", "native", 2, "failed"),
        ("covid_ct", "full", "native", 0, "ok"),
        # no lr trained: every lr of the sweep seed stays reported, each unreachable
        ("busi", "lora", "0.0001", 0, "unreachable"), ("busi", "lora", "0.0001", 0, "unreachable"),
        ("busi", "lora", "0.0001", 1, "unreachable"), ("busi", "lora", "0.0001", 2, "unreachable"),
        ("covid_ct", "lora", "0.01", 0, "corrupt"), ("covid_ct", "lora", "0.01", 0, "ok"),
        # not declared by the study: ignored
        ("busi", "vera", "native", 0, "ok"), ("chaoyang", "full", "native", 0, "ok"),
        ("busi", "full", "native", 7, "ok"),
    ])
    table = coverage_table(runs, STUDY)
    assert len(table) == 6 and (table[list(STATES)].sum(axis=1) == 3).all()
    got = {(r.method, r.ratio_tag, r.dataset): {s: r[s] for s in STATES} for _, r in table.iterrows()}
    assert got == brute_force(runs, STUDY)
    assert got[("full", "native", "busi")] == {"ok": 2, "unreachable": 0, "failed": 1, "corrupt": 0, "missing": 0}
    assert got[("full", "native", "covid_ct")] == {"ok": 1, "unreachable": 0, "failed": 0, "corrupt": 0, "missing": 2}
    assert got[("lora", "0.0001", "busi")]["unreachable"] == 3
    assert got[("lora", "0.01", "covid_ct")]["ok"] == 1  # ok wins over a corrupt file of the same seed


def test_markdown_names_each_cells_states_and_the_totals() -> None:
    runs = reported([("busi", "full", "native", s, "ok") for s in range(3)]
                    + [("busi", "lora", "0.0001", s, "unreachable") for s in range(3)])
    text = to_markdown(coverage_markdown_table(coverage_table(runs, STUDY)))
    assert "| full | native | 3 ok | 3 missing |" in text
    assert "| lora | 1e-4 | 3 unreachable | 3 missing |" in text
    assert ("18 declared cells (method x ratio x dataset x seed): 3 ok, 3 unreachable, 0 failed, 0 corrupt, "
            "12 missing") in text


def test_the_report_shows_coverage_under_the_runs_when_the_study_is_recorded(runs_dir) -> None:
    results = runs_dir.parent
    study = {"datasets": ["covid_ct", "chaoyang"], "seeds": [0, 1, 2], "output": str(results),
             "methods": {"full": ["native"], "vpt-deep": [1e-5], "gps": [0.01]}}
    (results / STUDY_RECORD).write_text(yaml.safe_dump(study))
    text = write_report(results).read_text()
    runs_at, coverage_at, tables_at = (text.index(s) for s in ("## Runs", "**Study coverage", "## Tables"))
    assert runs_at < coverage_at < tables_at
    assert "| full | native | 3 ok | 3 ok |" in text
    assert "| vpt-deep | 1e-5 | 3 unreachable | 3 unreachable |" in text
    assert "| gps | 1e-2 | 3 missing | 3 missing |" in text
    assert ("18 declared cells (method x ratio x dataset x seed): 6 ok, 6 unreachable, 0 failed, 0 corrupt, "
            "6 missing") in text
