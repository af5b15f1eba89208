"""benchmark.sparsity end to end on a real `benchmark.run --method full --save-state` run of tiny_vit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

import shpeft
from benchmark import data
from benchmark.backbones import create_backbone
from benchmark.config import from_flat
from benchmark.cell import calibration_split, make_batches
from benchmark.run import run
from benchmark.sparsity import (
    FineTuned,
    blend_,
    concentration,
    flat_indices,
    main,
    measure_sparsity,
    overlap,
)
from benchmark.train import evaluate

DATASET = "synthetic-medmnist"
KEEP = [1e-3, 1e-2, 1e-1, 1.0]
OVERLAP_RATIO = 1e-2


def _full_run(root: Path, name: str, *, lr: float, epochs: int, pretrained: bool = True) -> tuple[Path, Path]:
    result, state = root / f"{name}.json", root / f"{name}.safetensors"
    out = run(from_flat(dict(dataset=DATASET, method="full", backbone="tiny_vit", pretrained=pretrained, image_size=32,
                             epochs=epochs, lr=lr, batch_size=32, data_root=str(root / "data"), out=str(result),
                             save_state=str(state), progress=False, force=True)))
    assert out.status == "ok"
    return result, state


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sparsity")
    data.prepare(DATASET, root / "data", size=32)
    return _full_run(root, "ft", lr=3e-3, epochs=2)


@pytest.fixture(scope="module")
def outputs(finetuned, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    measure_sparsity([finetuned], out, keep_fractions=KEEP, overlap_ratio=OVERLAP_RATIO)
    return out


def _pretrained() -> torch.nn.Module:
    """tiny_vit's 'pretrained' weights (a fixed seeded init), built independently of benchmark.sparsity."""
    return create_backbone("tiny_vit", data.get(DATASET).num_classes, pretrained=True, image_size=32)


def _abs_delta(state: Path) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: |w_ft - w_pre| and |w_pre| of the eligible weights, flattened in model order."""
    pre, ft = shpeft.eligible_parameters(_pretrained()), load_file(str(state))
    delta = np.concatenate([(ft[n] - p.detach()).abs().flatten().numpy() for n, p in pre.items()])
    return delta, np.concatenate([p.detach().abs().flatten().numpy() for p in pre.values()])


def _top_set(values: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-values, kind="stable")[:k].tolist())


def test_all_files_are_written(outputs):
    names = sorted(p.name for p in outputs.iterdir())
    assert names == ["concentration.csv", "hybridity.csv", "keep_top.csv", "overlap.csv"]
    assert all(len(pd.read_csv(path)) for path in outputs.iterdir())


def test_concentration_is_monotone_reaches_one_and_matches_brute_force(outputs, finetuned):
    conc = pd.read_csv(outputs / "concentration.csv").sort_values("fraction")
    assert conc["fraction"].min() == pytest.approx(1e-5) and {1e-4, 1e-3, 1e-2, 1e-1, 1.0} <= set(conc["fraction"])
    assert conc["share"].is_monotonic_increasing and conc["share"].iloc[-1] == 1.0
    delta, _ = _abs_delta(finetuned[1])
    desc = np.sort(delta)[::-1].astype(np.float64)
    for p in (1e-4, 1e-3, 1e-2, 1e-1):
        row = conc[np.isclose(conc["fraction"], p)].iloc[0]
        assert row["k"] == round(p * len(delta)) and row["n_eligible"] == len(delta)
        assert row["share"] == pytest.approx(desc[: row["k"]].sum() / desc.sum(), rel=1e-9)


def test_keep_top_references_reproduce_the_finetuned_and_the_reverted_model(outputs, finetuned):
    result, state = finetuned
    keep = pd.read_csv(outputs / "keep_top.csv")
    test_f1 = json.loads(result.read_text())["metrics"]["test"]["macro_f1"]
    assert keep.loc[keep["setting"] == "fine-tuned", "macro_f1"].item() == test_f1
    assert keep.loc[(keep["setting"] == "top-p") & (keep["keep_fraction"] == 1.0), "macro_f1"].item() == test_f1
    # reverted (p = 0) built by hand: pretrained eligible weights, every other parameter fine-tuned
    model, ft = _pretrained(), load_file(str(state))
    eligible = shpeft.eligible_parameters(model)
    model.load_state_dict({n: t for n, t in ft.items() if n not in eligible}, strict=False)
    cfg = FineTuned.read(result, state).cfg
    test = data.load(DATASET, cfg.data_root, size=32)["test"]
    reverted = evaluate(model, make_batches(cfg, test, model, torch.device("cpu")), data.get(DATASET).num_classes)
    row = keep[keep["setting"] == "reverted"].iloc[0]
    assert (row["macro_f1"], row["accuracy"], row["k"]) == (reverted["macro_f1"], reverted["accuracy"], 0)
    assert keep["non_eligible"].str.startswith("fine-tuned").all()
    top = keep[keep["setting"] == "top-p"].sort_values("keep_fraction")
    assert top["k"].tolist() == [round(p * row["n_eligible"]) for p in KEEP]


def test_task_agnostic_overlap_equals_brute_force_intersection(outputs, finetuned):
    table = pd.read_csv(outputs / "overlap.csv").set_index(["set_a", "set_b"])
    delta, magnitude = _abs_delta(finetuned[1])
    k = round(OVERLAP_RATIO * len(delta))
    expected = len(_top_set(delta, k) & _top_set(magnitude, k)) / k
    row = table.loc[(DATASET, "task-agnostic |w|")]
    assert row["overlap"] == expected and row["k"] == k and row["random_expected"] == k / len(delta)
    assert table.loc[(DATASET, DATASET), "overlap"] == 1.0


def test_task_specific_overlap_equals_brute_force_gradient_ranking(outputs, finetuned):
    """The top-k |dw| against the top-k mean |gradient| of the task loss at the pretrained weights, each
    gradient taken by hand batch by batch on the run's calibration sample."""
    result, state = finetuned
    run_ = FineTuned.read(result, state)
    splits = data.load(DATASET, run_.cfg.data_root, size=32)
    model = run_.pretrained(data.get(DATASET).num_classes, torch.device("cpu")).eval()
    calib, _ = calibration_split(run_.cfg, splits["train"], data.get(DATASET).num_classes)
    eligible = shpeft.eligible_parameters(model)
    total = {n: torch.zeros_like(p) for n, p in eligible.items()}
    batches = list(make_batches(run_.cfg, calib, model, torch.device("cpu")))
    for x, y in batches:
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(eligible.values()))
        for n, g in zip(eligible, grads):
            total[n] += g.abs()
    gradient = np.concatenate([(t / len(batches)).flatten().numpy() for t in total.values()])
    delta, magnitude = _abs_delta(state)
    k = round(OVERLAP_RATIO * len(delta))
    row = pd.read_csv(outputs / "hybridity.csv").iloc[0]
    assert (row["dataset"], row["seed"], row["k"]) == (DATASET, 0, k)
    assert row["overlap_task_specific"] == len(_top_set(delta, k) & _top_set(gradient, k)) / k
    assert row["overlap_task_agnostic"] == len(_top_set(delta, k) & _top_set(magnitude, k)) / k
    assert row["random_expected"] == k / len(delta)


@pytest.mark.parametrize("pretrained", [True, False])
def test_rebuilt_backbone_is_the_runs_initial_backbone(tmp_path, finetuned, pretrained):
    """With a negligible learning rate the fine-tuned state is the run's own init."""
    (tmp_path / "data").symlink_to(finetuned[0].parent / "data")
    result, state = _full_run(tmp_path, "frozen", lr=1e-30, epochs=1, pretrained=pretrained)
    ft = load_file(str(state))
    model = FineTuned.read(result, state).pretrained(data.get(DATASET).num_classes, torch.device("cpu"))
    assert max(float((p.detach() - ft[n]).abs().max()) for n, p in model.named_parameters()
               if not n.startswith("head.")) < 1e-20


def test_planted_changes_are_fully_concentrated_and_overlap_completely(tmp_path, finetuned):
    result, state = finetuned
    model, ft = _pretrained(), load_file(str(state))
    eligible = shpeft.eligible_parameters(model)
    n = sum(p.numel() for p in eligible.values())
    planted_state = {name: p.detach().clone() for name, p in model.named_parameters()} | {
        name: t for name, t in ft.items() if name.startswith("head.")}
    planted = torch.linspace(0, n - 1, 10).long()
    names = list(eligible)
    offsets = np.cumsum([0, *(eligible[x].numel() for x in names)])
    for i in planted.tolist():
        j = int(np.searchsorted(offsets, i, side="right")) - 1
        planted_state[names[j]].view(-1)[i - offsets[j]] += 0.5
    save_file(planted_state, str(tmp_path / "planted.safetensors"))
    pair = (result, tmp_path / "planted.safetensors")
    recorded = json.loads(result.read_text())
    for block in (recorded["config"], recorded["config"]["identity"]):
        block["seed"] = 1
    (tmp_path / "seed1.json").write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match="same .dataset, seed."):
        measure_sparsity([pair, pair], tmp_path / "out", keep_fractions=[0.5], overlap_ratio=0.5)
    measure_sparsity([pair, (tmp_path / "seed1.json", pair[1])], tmp_path / "out", keep_fractions=[10 / n, 0.5],
                     overlap_ratio=10 / n)
    conc = pd.read_csv(tmp_path / "out" / "concentration.csv")
    at_ten = conc[conc["k"] == 10]
    assert sorted(at_ten["seed"]) == [0, 1] and (at_ten["share"] == 1.0).all()
    table = pd.read_csv(tmp_path / "out" / "overlap.csv").set_index(["set_a", "set_b"])
    assert table.loc[(DATASET, DATASET), "overlap"] == 1.0 and table["k"].eq(10).all()
    assert set(table.index.get_level_values(0)) == {DATASET, "task-agnostic |w|"}  # one model per dataset: seed 0
    keep = pd.read_csv(tmp_path / "out" / "keep_top.csv")
    first = keep[(keep["dataset"] == DATASET) & (keep["seed"] == 0)].set_index("setting")
    assert first.loc["top-p", "macro_f1"].tolist()[0] == first.loc["fine-tuned", "macro_f1"]  # all 10 changes kept
    # the same through the pure functions
    abs_delta = {x: (load_file(str(pair[1]))[x] - eligible[x].detach()).abs() for x in names}
    assert torch.equal(flat_indices(shpeft.select(abs_delta, 10 / n)), planted)
    flat = torch.cat([d.flatten() for d in abs_delta.values()]).numpy()
    flat.sort()
    assert concentration(flat, [10 / n, 9 / n, 1.0]).tolist() == pytest.approx([1.0, 0.9, 1.0], abs=1e-6)


def test_pure_functions():
    assert overlap(torch.tensor([1, 2, 3, 4]), torch.tensor([4, 3, 9, 8])) == 0.5
    with pytest.raises(ValueError, match="equal size"):
        overlap(torch.tensor([1]), torch.tensor([1, 2]))
    assert np.isnan(concentration(np.zeros(5, dtype=np.float32), [0.4])[0])
    assert concentration(np.arange(5, dtype=np.float32), [0.0, 0.2, 0.4]).tolist() == [0.0, 0.4, 0.7]
    param, pre, ft = torch.zeros(2, 3), torch.zeros(2, 3), torch.arange(6.0).view(2, 3)
    blend_(param, pre, ft, torch.tensor([1, 5]))
    assert param.flatten().tolist() == [0, 1, 0, 0, 0, 5]
    blend_(param, pre, ft, None)
    assert torch.equal(param, ft)


def test_state_of_a_sparse_method_is_rejected(tmp_path, finetuned):
    result, state = finetuned
    save_file({n: t for n, t in load_file(str(state)).items() if n.startswith("head.")}, str(tmp_path / "head.st"))
    with pytest.raises(ValueError, match="--method full"):
        measure_sparsity([(result, tmp_path / "head.st")], tmp_path / "out", keep_fractions=[0.1], overlap_ratio=0.1)


def test_cli(capsys, outputs, finetuned):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "--overlap-ratio" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--runs", str(finetuned[0]), "--states", str(finetuned[1]), str(finetuned[1])])
    assert "--states" in capsys.readouterr().err
