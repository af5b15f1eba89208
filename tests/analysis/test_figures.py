import pytest

from analysis.figures import ratio_points, write_figures
from analysis.results import load_runs
from analysis.tables import summarize


def test_figure_files_are_non_empty_png_and_pdf(runs_dir, tmp_path):
    paths = write_figures(load_runs(runs_dir), tmp_path)
    assert sorted(p.name for p in paths) == ["ratio_vs_macro_f1.pdf", "ratio_vs_macro_f1.png",
                                             "ratio_vs_macro_f1_per_dataset.pdf", "ratio_vs_macro_f1_per_dataset.png"]
    for path in paths:
        magic = b"\x89PNG" if path.suffix == ".png" else b"%PDF"
        assert path.read_bytes().startswith(magic) and path.stat().st_size > 1000


def test_points_are_achieved_ratio_and_average_over_datasets(runs_dir):
    points = ratio_points(summarize(load_runs(runs_dir), "macro_f1")).set_index("label")
    assert points.loc["shpeft (r=1e-3)", "x"] == pytest.approx(1e-3)
    assert points.loc["shpeft (r=1e-3)", "mean"] == pytest.approx((86.0 + 79.0) / 2)
    assert points.loc["full", "x"] == 1.0 and points.loc["spt (r=1e-4)", "state"] == "incomplete"
    assert "vpt-deep (r=1e-5)" not in points.index  # unreachable: no point


def test_empty_results_still_give_figures(tmp_path):
    assert all(p.exists() for p in write_figures(load_runs([]), tmp_path))
