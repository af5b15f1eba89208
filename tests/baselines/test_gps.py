"""GPS (baselines/gps.py): the per-row selection against a brute-force reference, the SupCon
loss against its definition, the budget (biases + selected weights) and GPS's frozen and
trained sets."""
from __future__ import annotations

import copy
import math

import pytest
import torch

import baselines
import shpeft
from baselines.gps import GPS, MirroredViews, parameters_by_role, per_row_top, supcon_loss
from tests.baselines.helpers import batch, tiny_vit

MATRICES = {"patch_embed.proj.weight"} | {
    f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
}
BIASES = 16 + 2 * (48 + 16 + 32 + 16)  # patch embedding + qkv, proj, fc1, fc2 per block
NEURONS = 16 + 2 * (48 + 16 + 32 + 16)  # one row per output


def reference_selection(scores: dict[str, torch.Tensor], k: int) -> dict[str, set[int]]:
    """Brute force: rank every row (best first, ties to the lowest column); give every row its top
    n for the largest n that fits in k, then one more to the rows with the best next score (ties
    to the earliest row)."""
    rows = [(name, r, row.tolist()) for name, s in scores.items() for r, row in enumerate(s.reshape(s.shape[0], -1))]
    ranked = [sorted(range(len(row)), key=lambda c: (-row[c], c)) for _, _, row in rows]
    n = 0
    while sum(min(n + 1, len(cols)) for cols in ranked) <= k and any(len(cols) > n for cols in ranked):
        n += 1
    chosen = {name: set() for name in scores}
    for (name, r, row), cols in zip(rows, ranked):
        chosen[name] |= {r * len(row) + c for c in cols[:n]}
    left = k - sum(min(n, len(cols)) for cols in ranked)
    has_next = [i for i, cols in enumerate(ranked) if len(cols) > n]
    for i in sorted(has_next, key=lambda i: (-rows[i][2][ranked[i][n]], i))[:left]:
        name, r, row = rows[i]
        chosen[name].add(r * len(row) + ranked[i][n])
    return chosen


def selected(mask: shpeft.Mask) -> dict[str, set[int]]:
    return {name: set(i.tolist()) for name, i in mask.indices.items()}


def planted_scores() -> dict[str, torch.Tensor]:
    """Few distinct values (many ties), rows of different widths, one 4-D kernel."""
    g = torch.Generator().manual_seed(0)
    return {"conv": torch.randint(0, 3, (4, 2, 2, 2), generator=g).float(),
            "wide": torch.randint(0, 4, (3, 9), generator=g).float(),
            "narrow": torch.randint(0, 2, (5, 2), generator=g).float()}


@pytest.mark.parametrize("k", [0, 1, 5, 12, 13, 20, 24, 31, 40, 59, 69])
def test_per_row_top_equals_brute_force(k: int) -> None:
    scores = planted_scores()
    mask = per_row_top(scores, k)
    assert mask.k == k
    assert selected(mask) == reference_selection(scores, k)


def test_per_row_top_rejects_more_than_every_weight() -> None:
    with pytest.raises(ValueError, match="k must be in"):
        per_row_top(planted_scores(), 4 * 8 + 3 * 9 + 5 * 2 + 1)


def test_supcon_loss_equals_its_definition() -> None:
    g = torch.Generator().manual_seed(3)
    features, labels = torch.randn(5, 2, 4, generator=g), torch.tensor([0, 1, 0, 2, 1])
    z = torch.nn.functional.normalize(features, dim=-1)
    anchors = [(i, v) for v in range(2) for i in range(5)]
    losses = []
    for i, v in anchors:
        others = [(j, w) for j, w in anchors if (j, w) != (i, v)]
        sims = {o: float(z[i, v] @ z[o[0], o[1]]) / 0.07 for o in others}
        log_norm = math.log(sum(math.exp(s) for s in sims.values()))
        positives = [o for o in others if labels[o[0]] == labels[i]]
        losses.append(-sum(sims[o] - log_norm for o in positives) / len(positives))
    assert float(supcon_loss(features, labels)) == pytest.approx(sum(losses) / len(losses), rel=1e-5)


@pytest.mark.parametrize("k", [BIASES, BIASES + 100, BIASES + NEURONS, BIASES + 3 * NEURONS + 7])
def test_attach_selects_the_brute_force_set_of_the_supcon_gradient(k: int) -> None:
    x, y = batch()
    reference = tiny_vit()
    supcon_loss(MirroredViews(reference).eval()(x), y).backward()
    scores = {n: p.grad.abs() for n, p in parameters_by_role(reference, "rows").items()}
    model = GPS().attach(tiny_vit(), k, [(x, y)])
    sites = shpeft.delta_sites(model)
    expected = reference_selection(scores, k - BIASES)
    assert {n: set(s.indices.tolist()) for n, s in sites.items()} == {n: c for n, c in expected.items() if c}
    assert shpeft.trainable_report(model)["trainable_backbone"] == k == GPS().count(tiny_vit(), k)


def test_native_is_one_connection_per_neuron_plus_the_biases() -> None:
    prepared = baselines.prepare(baselines.get("gps"), tiny_vit(), None, [batch()])
    assert prepared.knob_value == BIASES + NEURONS == prepared.trainable - prepared.head_params
    for name, site in shpeft.delta_sites(prepared.model).items():
        rows = site.indices // (site.shape.numel() // site.shape[0])
        assert torch.equal(rows, torch.arange(site.shape[0])), name


def test_frozen_and_trained_sets_are_gps_rules() -> None:
    """Biases (and the head) train whole, deltas sit on the matrices only; norms, pos_embed and
    cls_token stay frozen."""
    prepared = baselines.prepare(baselines.get("gps"), tiny_vit(), None, [batch()])
    model = prepared.model
    assert set(shpeft.delta_sites(model)) == MATRICES
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    deltas = {n for n in trained if n.endswith("delta")}
    whole = {n.replace(".base.", ".") for n in trained - deltas if not n.startswith("head.")}  # unwrapped names
    assert whole == set(parameters_by_role(tiny_vit(), "whole")) == {
        n for n, _ in tiny_vit().named_parameters() if n.endswith("bias") and "norm" not in n and "head" not in n
    }
    assert {"head.weight", "head.bias"} <= trained
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"cls_token", "pos_embed", "norm.weight", "norm.bias", "blocks.0.norm1.weight"} <= frozen
    assert GPS.recipe.weight_decay == 0 and deltas <= prepared.no_decay


def test_budget_below_the_biases_is_unreachable_and_above_is_exact() -> None:
    below = baselines.prepare(baselines.get("gps"), tiny_vit(), 1e-2, [batch()])  # 77 weights < 240 biases
    assert not below.reachable and below.trainable - below.head_params == BIASES
    above = baselines.prepare(baselines.get("gps"), tiny_vit(), 0.1, [batch()])
    assert above.reachable and above.trainable - above.head_params == round(0.1 * above.backbone_params)


def test_every_weight_of_every_matrix_is_the_ceiling() -> None:
    model = tiny_vit()
    most = BIASES + sum(p.numel() for p in parameters_by_role(model, "rows").values())
    assert GPS().count(model, 10**9) == most
    assert GPS().bounds(copy.deepcopy(model)) == (BIASES, most)
