"""benchmark.provenance: git_dirty says whether the code differed from the commit, not the outputs."""
import subprocess

import torch

from benchmark import provenance as prov


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_rewriting_committed_results_is_not_dirty_but_changing_code_is(tmp_path, monkeypatch):
    (tmp_path / prov.OUTPUTS).mkdir()
    (tmp_path / prov.OUTPUTS / "s0.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")
    monkeypatch.setattr(prov, "REPO", tmp_path)
    cpu = torch.device("cpu")
    assert prov.provenance(cpu)["git_dirty"] is False
    (tmp_path / prov.OUTPUTS / "s0.json").write_text('{"rerun": true}')  # a study re-running a committed cell
    assert prov.provenance(cpu)["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    record = prov.provenance(cpu)
    assert record["git_dirty"] is True and len(record["git_commit"]) == 40
