import pytest
from matplotlib.figure import Figure

from analysis.figures import plot_ratio_curves, ratio_points, styles, write_figures
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


def test_error_bars_and_bands_are_the_95_percent_intervals(runs_dir):
    long = summarize(load_runs(runs_dir), "macro_f1")
    points = ratio_points(long)
    ax = Figure().subplots()
    plot_ratio_curves(ax, points, styles(long))
    shpeft = points[points["method"] == "shpeft"].sort_values("x")
    bars = next(c for c in ax.containers if c.get_label() == "shpeft")
    spans = [(seg[0][1], seg[1][1]) for seg in bars.lines[2][0].get_segments()]
    assert spans == [pytest.approx((r.ci_low, r.ci_high)) for r in shpeft.itertuples()]
    full = points[points["method"] == "full"].iloc[0]  # x = 1: a horizontal line with its interval as a band
    band = next(p for p in ax.patches if p.get_y() == pytest.approx(full["ci_low"]))
    assert band.get_height() == pytest.approx(full["ci_high"] - full["ci_low"])
