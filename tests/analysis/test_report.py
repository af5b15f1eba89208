import re
import shutil

from analysis.report import write_report


def test_report_links_existing_files_and_counts_runs(runs_dir, tmp_path):
    results = runs_dir.parent
    write_report(results)  # builds tables/ and figures/
    sparsity = results / "sparsity"
    sparsity.mkdir()
    shutil.copy(results / "figures" / "ratio_vs_macro_f1.png", sparsity / "overlap.png")
    (sparsity / "overlap.csv").write_text("a,b\n1,2\n")
    report = write_report(results)
    text = report.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert all((results / link).is_file() for link in links), [x for x in links if not (results / x).is_file()]
    for target in ("figures/ratio_vs_macro_f1.png", "figures/ratio_vs_macro_f1.pdf", "sparsity/overlap.png",
                   "sparsity/overlap.csv", "tables/main_macro_f1.csv", "tables/paper_comparison.tex",
                   "tables/selected_hparams.csv", "tables/runs.csv", "tables/paired_vs_shpeft.csv"):
        assert target in links
    assert "![overlap](sparsity/overlap.png)" in text
    assert "61 result files: 50 ok, 4 failed, 6 unreachable, 1 corrupt" in text
    assert (results / "tables" / "main_macro_f1.md").read_text().strip() in text
    assert text.index("### main_macro_f1") < text.index("### paper_comparison") < text.index("### ablation_macro_f1")
    assert "git_commit: `abc1234` (60)" in text and "device: `cpu` (60)" in text
    assert "not JSON" in text  # the corrupt file is listed with its error


def test_report_without_runs(tmp_path):
    text = write_report(tmp_path).read_text()
    assert "0 result files: 0 ok, 0 failed, 0 unreachable" in text and "Not produced yet" in text
