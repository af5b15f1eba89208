"""The paper's motivation measurement on fully fine-tuned models (per dataset and seed) -> four CSVs
(drawn by ``python -m analysis sparsity``).

For every (result JSON, state) pair of ``python -m benchmark.run --method full --save-state ...``, the
pretrained backbone is rebuilt exactly as the run built it and dw = w_ft - w_pre is taken on the
eligible weights (``shpeft.eligible_parameters``: the block projection matrices). Written to ``outdir``:

* ``concentration.csv`` (sparsity): share of the total |dw| carried by the top p of the eligible
  weights ranked by |dw|, for p on a log grid (1e-5 .. 1) plus the keep fractions.
* ``keep_top.csv`` (sparsity): test macro-F1 / accuracy of pretrained + only the top-p |dw|
  changes (every other eligible weight reverted to pretrained), with the references "fine-tuned" (p = 1)
  and "reverted" (p = 0). Every NON-eligible parameter (head, biases, norms, embeddings) is always the
  fine-tuned one (column ``non_eligible``).
* ``hybridity.csv`` (hybridity): per model, |A ∩ B| / k of its top-k |dw| (k = round(ratio x eligible
  weights), ``shpeft.select``, same tie rule as the method) with the task-specific top-k (the mean |gradient|
  of the task loss at the pretrained weights on the run's calibration sample, SH-PEFT's own score) and with
  the task-agnostic top-k (|w_pre|); ``random_expected`` = k / N is the overlap of random sets.
* ``overlap.csv`` (hybridity across datasets): the same overlap for every pair of datasets (each one's
  lowest-seed model) and with the task-agnostic top-k.

Every row names its model by ``dataset`` and ``seed``.

``python -m benchmark.sparsity --runs a.json b.json --states a.safetensors b.safetensors --out results/sparsity``
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from torch import Tensor, nn

import shpeft
from benchmark.config import RunConfig
from benchmark.cell import build_model, calibration_split, load_splits, make_batches, resolve_device
from benchmark.cli import (ArgumentParser, UsageError, add_debug, existing_file, folder_path, guarded, ratio,
                           wants_debug)
from benchmark.config import check_device, from_recorded
from benchmark.result import Result
from benchmark.train import evaluate

CONCENTRATION_GRID: tuple[float, ...] = tuple(float(f"{p:.3g}") for p in np.logspace(-5, 0, 21))
DEFAULT_KEEP: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_OVERLAP_RATIO = 1e-3
TASK_AGNOSTIC = "task-agnostic |w|"
NON_ELIGIBLE = "fine-tuned (head, biases, norms, embeddings)"


# ---------------------------------------------------------------- the math (pure functions)
def n_top(fraction: float, n: int) -> int:
    """k = round(fraction x n), as ``shpeft.select`` counts."""
    return round(fraction * n)


def concentration(ascending: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Share of ``ascending.sum()`` carried by its top round(p x N) entries, for each p in ``fractions``.

    ``ascending``: the |dw| values sorted ascending (1-D). One pass: the sums between consecutive cut points
    are accumulated in float64 from the top; p = 1 gives exactly 1.0 (NaN for an all-zero input).
    """
    n = len(ascending)
    ks = np.array([n_top(p, n) for p in fractions])
    cuts = np.unique(np.append(ks, n))  # ascending k, ends with N
    edges = n - np.concatenate([[0], cuts])  # slice bounds from the top
    segments = [ascending[lo:hi].sum(dtype=np.float64) for hi, lo in zip(edges[:-1], edges[1:])]
    top_sums = dict(zip(cuts.tolist(), np.cumsum(segments)))
    total = top_sums[n]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.array([top_sums[k] / total if k else 0.0 for k in ks.tolist()])


def flat_indices(mask: shpeft.Mask) -> Tensor:
    """The mask's weights as sorted indices into the concatenation of its tensors (in the mask's order)."""
    offsets = np.cumsum([0, *(s.numel() for s in mask.shapes.values())])
    return torch.cat([mask.indices[n] + int(o) for n, o in zip(mask.shapes, offsets)])


def overlap(a: Tensor, b: Tensor) -> float:
    """|A ∩ B| / k of two index sets of the same size k."""
    if len(a) != len(b):
        raise ValueError(f"overlap needs sets of equal size, got {len(a)} and {len(b)}")
    return float(torch.isin(a, b).sum()) / len(a)


def blend_(param: Tensor, pre: Tensor, ft: Tensor, keep: Tensor | None) -> None:
    """In place: ``param`` = ``pre`` with the entries at flat indices ``keep`` taken from ``ft``
    (``keep=None``: all of ``ft``)."""
    if keep is None:
        param.copy_(ft)
        return
    param.copy_(pre)
    param.view(-1)[keep.to(param.device)] = ft.reshape(-1)[keep].to(param.device, param.dtype)


# ---------------------------------------------------------------- one fine-tuned model
@dataclass(frozen=True)
class FineTuned:
    """One finished ``--method full --save-state`` run: its recorded config and the path of its state."""

    label: str
    cfg: RunConfig
    state: Path

    @classmethod
    def read(cls, result: str | Path, state: str | Path, data_root: str | None = None) -> FineTuned:
        """The run of ``result`` (``data_root`` overrides the recorded data root)."""
        recorded = Result.read(result)
        if recorded.status != "ok":
            raise ValueError(f"{result}: status {recorded.status!r}, need a finished ('ok') run")
        cfg = from_recorded(recorded.config, {"data_root": data_root} if data_root else {})
        return cls(cfg.dataset, cfg, Path(state))

    def pretrained(self, num_classes: int, device: torch.device) -> nn.Module:
        """The model before fine-tuning, built as ``benchmark.run`` built it. ``tiny_vit``'s pretrained
        weights are a fixed seeded init; with ``pretrained=False`` the run's init is reproduced from its seed
        (the run seeds right before building). The head is random here; it is replaced by the fine-tuned one."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            return build_model(self.cfg, num_classes, device)


@dataclass
class Analysed:
    """What one fine-tuned model contributes to the outputs."""

    concentration: list[dict]
    keep_top: list[dict]
    top: Tensor  # flat indices of the top-k |dw| at the overlap ratio
    task_agnostic: Tensor  # flat indices of the top-k |w_pre|
    task_specific: Tensor  # flat indices of the top-k mean |gradient| at the pretrained weights
    n_eligible: int

    def hybridity(self, run: FineTuned, ratio: float) -> dict:
        """The row of hybridity.csv: the top-k |dw|'s overlap with each importance ranking."""
        k = len(self.top)
        return {"dataset": run.label, "seed": run.cfg.seed, "k": k, "n_eligible": self.n_eligible, "ratio": ratio,
                "overlap_task_specific": overlap(self.top, self.task_specific),
                "overlap_task_agnostic": overlap(self.top, self.task_agnostic), "random_expected": k / self.n_eligible}


def _check_state(keys: set[str], model: nn.Module, path: Path) -> None:
    missing = [n for n, _ in model.named_parameters() if n not in keys]
    if missing:
        raise ValueError(f"{path}: lacks {len(missing)} parameters of the model ({', '.join(missing[:4])} ...); "
                         "the analysis needs the state of a `--method full --save-state` run")


def analyse(run: FineTuned, keep_fractions: Sequence[float], overlap_ratio: float, *,
            device: torch.device = torch.device("cpu")) -> Analysed:
    """Concentration, keep-top evaluations and top-k sets of one fine-tuned model. Held on ``device``: the
    model, the pretrained eligible weights and |dw| (plus the transient copies of ``shpeft.select``)."""
    splits, info = load_splits(run.cfg)
    num_classes = info["num_classes"]
    model = run.pretrained(num_classes, device)
    eligible = shpeft.eligible_parameters(model)
    n_eligible = sum(p.numel() for p in eligible.values())
    task_agnostic = flat_indices(shpeft.select(shpeft.importance(model, kind="task_agnostic"), overlap_ratio))
    calib, _ = calibration_split(run.cfg, splits["train"], num_classes)
    gradients = shpeft.importance(model, list(make_batches(run.cfg, calib, model, device)), kind="task_specific")
    task_specific = flat_indices(shpeft.select(gradients, overlap_ratio))
    del gradients
    pre = {n: p.detach().clone() for n, p in eligible.items()}
    with safe_open(str(run.state), framework="pt", device="cpu") as state:
        _check_state(set(state.keys()), model, run.state)
        abs_delta = {n: (state.get_tensor(n).to(device, torch.float32) - pre[n]).abs_() for n in eligible}
        keep = {p: shpeft.select(abs_delta, p).indices for p in keep_fractions}
        top = flat_indices(shpeft.select(abs_delta, overlap_ratio))
        ascending = torch.cat([d.flatten() for d in abs_delta.values()]).cpu().numpy()
        del abs_delta
        ascending.sort()
        fractions = sorted({*CONCENTRATION_GRID, *keep_fractions})
        shares = dict(zip(fractions, concentration(ascending, fractions).tolist()))
        del ascending
        model.load_state_dict({k: state.get_tensor(k) for k in state.keys() if k not in eligible}, strict=False)
        batches = make_batches(run.cfg, splits["test"], model, device)
        settings = [("reverted", 0.0, {n: torch.empty(0, dtype=torch.long) for n in eligible}),
                    *(("top-p", p, keep[p]) for p in keep_fractions), ("fine-tuned", 1.0, None)]
        keep_rows = []
        for setting, p, indices in settings:
            with torch.no_grad():
                for n, param in eligible.items():
                    blend_(param, pre[n], state.get_tensor(n), None if indices is None else indices[n])
            metrics = evaluate(model, batches, num_classes)
            k = n_eligible if indices is None else sum(len(i) for i in indices.values())
            keep_rows.append({
                "dataset": run.label, "seed": run.cfg.seed, "setting": setting, "keep_fraction": p, "k": k, "n_eligible": n_eligible,
                "delta_share": shares.get(p, 0.0), "macro_f1": metrics["macro_f1"],
                "accuracy": metrics["accuracy"], "non_eligible": NON_ELIGIBLE,
            })
    conc_rows = [{"dataset": run.label, "seed": run.cfg.seed, "fraction": p, "k": n_top(p, n_eligible), "n_eligible": n_eligible,
                  "share": s} for p, s in shares.items()]
    return Analysed(conc_rows, keep_rows, top, task_agnostic, task_specific, n_eligible)


# ---------------------------------------------------------------- all models -> CSVs
def overlap_table(sets: Mapping[str, Tensor], n_eligible: int, ratio: float) -> pd.DataFrame:
    """Long table of |A ∩ B| / k for every ordered pair of sets, with k / N as the random expectation."""
    rows = []
    for a, set_a in sets.items():
        for b, set_b in sets.items():
            k = len(set_a)
            rows.append({"set_a": a, "set_b": b, "overlap": overlap(set_a, set_b), "k": k,
                         "n_eligible": n_eligible, "ratio": ratio, "random_expected": k / n_eligible})
    return pd.DataFrame(rows)


def first_seeds(runs: Sequence[FineTuned]) -> list[int]:
    """The index of each dataset's lowest-seed model (the one overlap.csv compares across datasets)."""
    lowest: dict[str, int] = {}
    for i, r in enumerate(runs):
        if r.label not in lowest or r.cfg.seed < runs[lowest[r.label]].cfg.seed:
            lowest[r.label] = i
    return sorted(lowest.values())


def measure_sparsity(pairs: Sequence[tuple[str | Path, str | Path]], outdir: str | Path, *,
                   keep_fractions: Sequence[float] = DEFAULT_KEEP, overlap_ratio: float | None = DEFAULT_OVERLAP_RATIO,
                   data_root: str | None = None, device: str = "cpu") -> list[Path]:
    """Write the CSVs for (result JSON, state safetensors) ``pairs``; return their paths.

    ``overlap_ratio=None`` uses the smallest keep fraction. ``data_root`` overrides the runs' data root.
    All runs must share the pretrained weights (same task-agnostic top-k), else ``ValueError``."""
    if not pairs:
        raise ValueError("no (result, state) pairs given")
    overlap_ratio = min(keep_fractions) if overlap_ratio is None else overlap_ratio
    runs = [FineTuned.read(result, state, data_root) for result, state in pairs]
    models = [(r.label, r.cfg.seed) for r in runs]
    if len(set(models)) != len(models):
        raise ValueError(f"two models of the same (dataset, seed) among {models}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    results = [analyse(r, keep_fractions, overlap_ratio, device=resolve_device(device)) for r in runs]
    first = results[0]
    for run, res in zip(runs, results):
        if res.n_eligible != first.n_eligible or not torch.equal(res.task_agnostic, first.task_agnostic):
            raise ValueError(f"{run.label}: its pretrained backbone differs from {runs[0].label}'s "
                             f"({run.cfg.backbone} vs {runs[0].cfg.backbone}); overlaps need one backbone")
    conc = pd.DataFrame([row for r in results for row in r.concentration])
    keep = pd.DataFrame([row for r in results for row in r.keep_top])
    sets = {runs[i].label: results[i].top for i in first_seeds(runs)} | {TASK_AGNOSTIC: first.task_agnostic}
    table = overlap_table(sets, first.n_eligible, overlap_ratio)
    hybrid = pd.DataFrame([res.hybridity(run, overlap_ratio) for run, res in zip(runs, results)])
    written = []
    for name, frame in (("concentration", conc), ("keep_top", keep), ("overlap", table), ("hybridity", hybrid)):
        frame.to_csv(outdir / f"{name}.csv", index=False)
        written.append(outdir / f"{name}.csv")
    return written


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m benchmark.sparsity", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug(p)
    p.add_argument("--runs", nargs="+", type=existing_file, required=True,
                   help="result JSONs of `benchmark.run --method full` runs")
    p.add_argument("--states", nargs="+", type=existing_file, required=True,
                   help="their --save-state files, in the same order")
    p.add_argument("--out", type=folder_path, default="results/sparsity", help="output directory (default: %(default)s)")
    p.add_argument("--keep", nargs="+", type=ratio, default=list(DEFAULT_KEEP),
                   help="keep fractions p of the keep-top evaluation (default: %(default)s)")
    p.add_argument("--overlap-ratio", type=ratio, default=DEFAULT_OVERLAP_RATIO,
                   help="top-k ratio of the overlap analysis (default: %(default)g)")
    p.add_argument("--data-root", type=folder_path, help="data root (default: each run's own)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    return p


def _main(argv: Sequence[str] | None) -> None:
    args = parser().parse_args(argv)
    if len(args.runs) != len(args.states):
        raise UsageError(f"--states: got {len(args.states)} files for {len(args.runs)} --runs; give one state per run")
    check_device(args.device)
    paths = measure_sparsity(list(zip(args.runs, args.states)), args.out, keep_fractions=args.keep,
                             overlap_ratio=args.overlap_ratio, data_root=args.data_root, device=args.device)
    print("\n".join(map(str, paths)))


def main(argv: Sequence[str] | None = None) -> None:
    # its ValueErrors name a bad input (a run that did not finish, a state of another method or backbone)
    guarded(lambda: _main(argv), (ValueError,), debug=wants_debug(argv))


if __name__ == "__main__":
    main()
