import pytest
import torch

import shpeft
from shpeft.select import _split_quota


def bruteforce_topk(scores, k):
    """Stable descending sort of all (score, global position) pairs; ties -> lower position."""
    flat = [(float(v), name, i) for name, s in scores.items() for i, v in enumerate(s.flatten().tolist())]
    order = sorted(range(len(flat)), key=lambda j: (-flat[j][0], j))[:k]
    return {(flat[j][1], flat[j][2]) for j in order}


def as_set(mask):
    return {(n, int(i)) for n, idx in mask.indices.items() for i in idx}


def random_scores(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.rand(20, 30, generator=g), "b": torch.rand(50, generator=g), "c": torch.rand(7, 9, generator=g)}


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5, 1.0])
def test_global_mask_equals_bruteforce_topk(ratio):
    scores = random_scores()
    mask = shpeft.select(scores, ratio)
    n = 20 * 30 + 50 + 63
    assert mask.k == round(ratio * n) == sum(int(mask.dense(k).sum()) for k in scores)
    assert as_set(mask) == bruteforce_topk(scores, mask.k)
    chosen = torch.cat([scores[n][mask.dense(n)] for n in scores])
    assert mask.threshold == pytest.approx(float(chosen.min()))


def test_ties_break_to_lowest_index_deterministically():
    scores = {"a": torch.ones(4, 4), "b": torch.ones(8)}
    mask = shpeft.select(scores, 0.25)  # k = 6 of 24, all tied
    assert mask.indices["a"].tolist() == [0, 1, 2, 3, 4, 5]
    assert mask.indices["b"].numel() == 0
    assert as_set(mask) == bruteforce_topk(scores, 6)


def test_planted_large_scores_are_selected():
    scores = {n: s * 1e-3 for n, s in random_scores(3).items()}
    planted = {("a", 7), ("a", 599), ("b", 0), ("c", 62), ("c", 30)}
    for name, i in planted:
        scores[name].view(-1)[i] = 10.0
    mask = shpeft.select(scores, 5 / 713)
    assert mask.k == 5
    assert as_set(mask) == planted


def test_per_layer_gives_each_tensor_its_share_and_differs_from_global():
    scores = random_scores(1)
    scores["b"] += 5.0  # every top weight globally is in "b"
    glob = shpeft.select(scores, 0.05)
    per = shpeft.select(scores, 0.05, scope="per_layer")
    assert glob.k == per.k == round(0.05 * 713)
    assert {n for n, _ in as_set(glob)} == {"b"}
    assert {n: int(i.numel()) for n, i in per.indices.items()} == {"a": 30, "b": 3, "c": 3}  # 36 x (600, 50, 63)/713, largest remainder
    for name in scores:  # within a tensor, per-layer picks that tensor's own top-k
        assert {(name, i) for _, i in as_set(per) if _ == name} == bruteforce_topk(
            {name: scores[name]}, per.indices[name].numel()
        )


def test_split_quota_sums_exactly():
    assert sum(_split_quota(7, [3, 3, 3])) == 7
    assert _split_quota(10, [100, 0, 900]) == [1, 0, 9]


def test_total_sets_the_denominator():
    mask = shpeft.select(random_scores(), 0.01, total=10_000)
    assert mask.k == 100 and mask.total == 10_000 and mask.n_eligible == 713


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), "0.1"])
def test_ratio_outside_unit_interval_raises(ratio):
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\]"):
        shpeft.select(random_scores(), ratio)


def test_zero_k_nan_and_empty_raise():
    with pytest.raises(ValueError, match="selects k = 0"):
        shpeft.select(random_scores(), 1e-5)
    bad = random_scores()
    bad["c"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="'c' contain 1 NaN/Inf"):
        shpeft.select(bad, 0.1)
    with pytest.raises(ValueError, match="no eligible weights"):
        shpeft.select({}, 0.1)
    with pytest.raises(ValueError, match="exceeds"):
        shpeft.select(random_scores(), 0.5, total=10_000)
