import pytest

from analysis.__main__ import main


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "tables" in capsys.readouterr().out


def test_tables_figures_report(runs_dir, tmp_path, capsys):
    statuses = tmp_path / "statuses.yaml"
    statuses.write_text("chaoyang: stand-in\n")
    main(["tables", "--runs", str(runs_dir), "--out", str(tmp_path / "t"), "--statuses", str(statuses),
          "--datasets", "covid_ct", "chaoyang"])
    assert "stand-in" in (tmp_path / "t" / "paper_comparison.md").read_text()
    assert "corrupt result" in capsys.readouterr().err
    main(["figures", "--runs", str(runs_dir), "--out", str(tmp_path / "f"), "--backbone", "tiny_vit"])
    assert (tmp_path / "f" / "ratio_vs_macro_f1.pdf").exists()
    main(["report", "--results", str(runs_dir.parent)])
    assert (runs_dir.parent / "report.md").exists()
