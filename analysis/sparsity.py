"""The paper's motivation analysis on fully fine-tuned models, one per dataset.

For every (result JSON, state) pair of ``python -m benchmark.run --method full --save-state ...``, the
pretrained backbone is rebuilt exactly as the run built it and dw = w_ft - w_pre is taken on the
eligible weights (``shpeft.eligible_parameters``: the block projection matrices). Written to ``outdir``:

* ``concentration.csv/.png/.pdf`` (sparsity): share of the total |dw| carried by the top p of the eligible
  weights ranked by |dw|, for p on a log grid (1e-5 .. 1) plus the keep fractions.
* ``keep_top.csv/.png/.pdf`` (sparsity): test macro-F1 / accuracy of pretrained + only the top-p |dw|
  changes (every other eligible weight reverted to pretrained), with the references "fine-tuned" (p = 1)
  and "reverted" (p = 0). Every NON-eligible parameter (head, biases, norms, embeddings) is always the
  fine-tuned one (column ``non_eligible``).
* ``overlap.csv/.png/.pdf`` (hybridity): |A ∩ B| / k of the top-k sets (k = round(ratio x eligible
  weights), ``shpeft.select``, same tie rule as the method) of every pair of datasets and of each
  dataset with the task-agnostic top-k (|w_pre|); ``random_expected`` = k / N is the overlap of random sets.

``python -m analysis.sparsity --runs a.json b.json --states a.safetensors b.safetensors --out results/sparsity``
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from safetensors import safe_open
from torch import Tensor, nn

import shpeft
from analysis.figures import save_figure
from analysis.render import fmt_percent
from benchmark import data
from benchmark.backbones import create_backbone, data_config
from benchmark.run import resolve_device
from benchmark.train import DeviceBatches, evaluate

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
    """One ``--method full --save-state`` run: its JSON config and the path of its state."""

    label: str
    config: dict
    state: Path

    @classmethod
    def read(cls, result: str | Path, state: str | Path) -> FineTuned:
        obj = json.loads(Path(result).read_text())
        if obj.get("status") != "ok":
            raise ValueError(f"{result}: status {obj.get('status')!r}, need a finished ('ok') run")
        return cls(obj["config"]["dataset"], obj["config"], Path(state))

    @property
    def num_classes(self) -> int:
        return data.get(self.config["dataset"]).num_classes

    def pretrained(self) -> nn.Module:
        """The backbone before fine-tuning, built as ``benchmark.run`` built it. ``tiny_vit``'s pretrained
        weights are a fixed seeded init; with ``pretrained=False`` the run's init is reproduced from its seed
        (the run seeds right before building). The head is random here; it is replaced by the fine-tuned one."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c["seed"])
            return create_backbone(c["backbone"], self.num_classes, pretrained=c["pretrained"],
                                   checkpoint=c.get("checkpoint"), image_size=c.get("image_size"))

    def test_batches(self, model: nn.Module, data_root: str | None, device: torch.device) -> DeviceBatches:
        """The test split, batched and normalised exactly as the run evaluated it."""
        c, dcfg = self.config, data_config(model)
        test = data.load(c["dataset"], root=data_root or c["data_root"], size=c.get("image_size") or 224)["test"]
        return DeviceBatches(test.images, test.labels, batch_size=c["batch_size"], device=device, mean=dcfg["mean"],
                             std=dcfg["std"], image_size=c.get("image_size") or dcfg["input_size"][-1])


@dataclass
class Analysed:
    """What one fine-tuned model contributes to the three outputs."""

    concentration: list[dict]
    keep_top: list[dict]
    top: Tensor  # flat indices of the top-k |dw| at the overlap ratio
    task_agnostic: Tensor  # flat indices of the top-k |w_pre|
    n_eligible: int


def _check_state(keys: set[str], model: nn.Module, path: Path) -> None:
    missing = [n for n, _ in model.named_parameters() if n not in keys]
    if missing:
        raise ValueError(f"{path}: lacks {len(missing)} parameters of the model ({', '.join(missing[:4])} ...); "
                         "the analysis needs the state of a `--method full --save-state` run")


def analyse(run: FineTuned, keep_fractions: Sequence[float], overlap_ratio: float, *,
            data_root: str | None = None, device: torch.device = torch.device("cpu")) -> Analysed:
    """Concentration, keep-top evaluations and top-k sets of one fine-tuned model. Held on ``device``: the
    model, the pretrained eligible weights and |dw| (plus the transient copies of ``shpeft.select``)."""
    model = run.pretrained().to(device)
    eligible = shpeft.eligible_parameters(model)
    n_eligible = sum(p.numel() for p in eligible.values())
    task_agnostic = flat_indices(shpeft.select(shpeft.importance(model, kind="task_agnostic"), overlap_ratio))
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
        batches = run.test_batches(model, data_root, device)
        settings = [("reverted", 0.0, {n: torch.empty(0, dtype=torch.long) for n in eligible}),
                    *(("top-p", p, keep[p]) for p in keep_fractions), ("fine-tuned", 1.0, None)]
        keep_rows = []
        for setting, p, indices in settings:
            with torch.no_grad():
                for n, param in eligible.items():
                    blend_(param, pre[n], state.get_tensor(n), None if indices is None else indices[n])
            metrics = evaluate(model, batches, run.num_classes)
            k = n_eligible if indices is None else sum(len(i) for i in indices.values())
            keep_rows.append({
                "dataset": run.label, "setting": setting, "keep_fraction": p, "k": k, "n_eligible": n_eligible,
                "delta_share": shares.get(p, 0.0), "macro_f1": metrics["macro_f1"],
                "accuracy": metrics["accuracy"], "non_eligible": NON_ELIGIBLE,
            })
    conc_rows = [{"dataset": run.label, "fraction": p, "k": n_top(p, n_eligible), "n_eligible": n_eligible,
                  "share": s} for p, s in shares.items()]
    return Analysed(conc_rows, keep_rows, top, task_agnostic, n_eligible)


# ---------------------------------------------------------------- all models -> CSV + figures
def overlap_table(sets: Mapping[str, Tensor], n_eligible: int, ratio: float) -> pd.DataFrame:
    """Long table of |A ∩ B| / k for every ordered pair of sets, with k / N as the random expectation."""
    rows = []
    for a, set_a in sets.items():
        for b, set_b in sets.items():
            k = len(set_a)
            rows.append({"set_a": a, "set_b": b, "overlap": overlap(set_a, set_b), "k": k,
                         "n_eligible": n_eligible, "ratio": ratio, "random_expected": k / n_eligible})
    return pd.DataFrame(rows)


def _percent_axis(ax, x: bool = True) -> None:
    formatter = FuncFormatter(lambda v, _: fmt_percent(v))
    (ax.xaxis if x else ax.yaxis).set_major_formatter(formatter)


def plot_concentration(conc: pd.DataFrame, stem: Path) -> list[Path]:
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    sns.lineplot(conc, x="fraction", y="share", hue="dataset", marker="o", ms=4, ax=ax)
    grid = np.array(sorted(conc["fraction"].unique()))
    ax.plot(grid, grid, ls="--", color="grey", lw=1, label="uniform |Δw| (share = p)")
    ax.set_xscale("log")
    _percent_axis(ax)
    _percent_axis(ax, x=False)
    ax.set_xlabel("top p of the eligible weights, ranked by |Δw|")
    ax.set_ylabel("share of total |Δw|")
    ax.set_title("Sparsity: concentration of the fine-tuning change", fontsize="small")
    ax.legend(fontsize="small")
    return save_figure(fig, stem)


def plot_keep_top(keep: pd.DataFrame, stem: Path) -> list[Path]:
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    colors = dict(zip(keep["dataset"].unique(), sns.color_palette("colorblind", keep["dataset"].nunique())))
    for ax, metric, name in zip(axes, ("macro_f1", "accuracy"), ("macro-F1", "accuracy")):
        for dataset, g in keep.groupby("dataset", sort=False):
            top = g[g["setting"] == "top-p"].sort_values("keep_fraction")
            ax.plot(top["keep_fraction"], top[metric] * 100, marker="o", color=colors[dataset], label=dataset)
            for setting, ls in (("fine-tuned", "--"), ("reverted", ":")):
                ax.axhline(g.loc[g["setting"] == setting, metric].iloc[0] * 100, ls=ls, lw=1.2,
                           color=colors[dataset])
        ax.set_xscale("log")
        _percent_axis(ax)
        ax.set_xlabel("kept top p of |Δw| (other eligible weights: pretrained)")
        ax.set_ylabel(f"test {name} (%)")
    fig.suptitle("Sparsity: keeping only the top-p changes. Dashed: full fine-tuning (p = 1); dotted: all "
                 "eligible changes reverted (p = 0).\nNon-eligible parameters (head, biases, norms, embeddings) "
                 "are the fine-tuned ones throughout.", fontsize="small")
    axes[1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_overlap(table: pd.DataFrame, stem: Path) -> list[Path]:
    order = list(dict.fromkeys(table["set_a"]))
    matrix = table.pivot(index="set_a", columns="set_b", values="overlap").loc[order, order] * 100
    fig = Figure(figsize=(1.1 * len(order) + 3, 0.9 * len(order) + 2))
    ax = fig.subplots()
    sns.heatmap(matrix, annot=True, fmt=".1f", cmap="viridis", vmin=0, vmax=100, square=True, ax=ax,
                cbar_kws={"label": "overlap |A∩B| / k (%)"})
    r = table.iloc[0]
    ax.set_title(f"Hybridity: overlap of the top-k |Δw| sets (k = {r.k} = {fmt_percent(r.ratio)} of "
                 f"{r.n_eligible}; random sets: {r.random_expected * 100:.2g}%)", fontsize="small")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return save_figure(fig, stem)


def _labels(runs: Sequence[FineTuned]) -> list[FineTuned]:
    """Distinct labels: a repeated dataset gets ' #2', ' #3', ..."""
    seen: dict[str, int] = {}
    out = []
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
        out.append(r if seen[r.label] == 1 else FineTuned(f"{r.label} #{seen[r.label]}", r.config, r.state))
    return out


def write_sparsity(pairs: Sequence[tuple[str | Path, str | Path]], outdir: str | Path, *,
                   keep_fractions: Sequence[float] = DEFAULT_KEEP, overlap_ratio: float | None = DEFAULT_OVERLAP_RATIO,
                   data_root: str | None = None, device: str = "cpu") -> list[Path]:
    """Write the three CSVs and figures (PNG + PDF) for (result JSON, state safetensors) ``pairs``.

    ``overlap_ratio=None`` uses the smallest keep fraction. ``data_root`` overrides the runs' data root.
    All runs must share the pretrained weights (same task-agnostic top-k), else ``ValueError``."""
    if not pairs:
        raise ValueError("no (result, state) pairs given")
    overlap_ratio = min(keep_fractions) if overlap_ratio is None else overlap_ratio
    runs = _labels([FineTuned.read(result, state) for result, state in pairs])
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    results = [analyse(r, keep_fractions, overlap_ratio, data_root=data_root, device=resolve_device(device))
               for r in runs]
    first = results[0]
    for run, res in zip(runs, results):
        if res.n_eligible != first.n_eligible or not torch.equal(res.task_agnostic, first.task_agnostic):
            raise ValueError(f"{run.label}: its pretrained backbone differs from {runs[0].label}'s "
                             f"({run.config['backbone']} vs {runs[0].config['backbone']}); overlaps need one backbone")
    conc = pd.DataFrame([row for r in results for row in r.concentration])
    keep = pd.DataFrame([row for r in results for row in r.keep_top])
    sets = {run.label: res.top for run, res in zip(runs, results)} | {TASK_AGNOSTIC: first.task_agnostic}
    table = overlap_table(sets, first.n_eligible, overlap_ratio)
    written = []
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        for name, frame, plot in (("concentration", conc, plot_concentration), ("keep_top", keep, plot_keep_top),
                                  ("overlap", table, plot_overlap)):
            frame.to_csv(outdir / f"{name}.csv", index=False)
            written += [outdir / f"{name}.csv", *plot(frame, outdir / name)]
    return written


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.sparsity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="result JSONs of `benchmark.run --method full` runs")
    p.add_argument("--states", nargs="+", required=True, help="their --save-state files, in the same order")
    p.add_argument("--out", default="results/sparsity", help="output directory (default: %(default)s)")
    p.add_argument("--keep", nargs="+", type=float, default=list(DEFAULT_KEEP),
                   help="keep fractions p of the keep-top evaluation (default: %(default)s)")
    p.add_argument("--overlap-ratio", type=float, default=DEFAULT_OVERLAP_RATIO,
                   help="top-k ratio of the overlap analysis (default: %(default)g)")
    p.add_argument("--data-root", help="data root (default: each run's own)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if len(args.runs) != len(args.states):
        parser().error(f"{len(args.runs)} --runs but {len(args.states)} --states")
    paths = write_sparsity(list(zip(args.runs, args.states)), args.out, keep_fractions=args.keep,
                           overlap_ratio=args.overlap_ratio, data_root=args.data_root, device=args.device)
    print("\n".join(map(str, paths)))


if __name__ == "__main__":
    main()
