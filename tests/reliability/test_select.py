"""select() and num_selected() at their edges: bad totals, numpy and bool ratios, and k=."""
import numpy as np
import pytest
import torch

import shpeft
from shpeft.select import num_selected

from ..shpeft.test_select import as_set, bruteforce_topk, random_scores

N_SCORED = 20 * 30 + 50 + 7 * 9  # random_scores() holds 713 weights


@pytest.mark.parametrize("total", [0, -1, -10_000, True, 2.5, "100"])
def test_a_total_that_is_not_a_positive_count_is_refused(total):
    with pytest.raises(ValueError, match="total must be a positive number of weights"):
        shpeft.select(random_scores(), 0.1, total=total)
    with pytest.raises(ValueError, match="total must be a positive number of weights"):
        num_selected(0.1, total)  # used to raise ZeroDivisionError for total=0


@pytest.mark.parametrize("ratio", [np.float32(0.1), np.float64(0.1), np.float32(1.0), 1])
def test_numpy_and_int_ratios_select_like_a_python_float(ratio):
    mask = shpeft.select(random_scores(), ratio)
    assert mask.k == round(float(ratio) * N_SCORED)
    assert as_set(mask) == as_set(shpeft.select(random_scores(), float(ratio)))
    assert type(mask.ratio) is float


@pytest.mark.parametrize("ratio", [True, False, np.bool_(True), torch.tensor(0.1)])
def test_bool_and_tensor_ratios_are_refused(ratio):
    """ratio=True used to be accepted as 1.0 (every weight)."""
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\]"):
        shpeft.select(random_scores(), ratio)


@pytest.mark.parametrize("scope", ["global", "per_layer"])
def test_k_selects_exactly_k(scope):
    scores = random_scores(2)
    for k in [1, 2, 7, 100, 356, N_SCORED]:
        mask = shpeft.select(scores, k=k, scope=scope)
        assert mask.k == k and mask.ratio == k / N_SCORED and mask.total == N_SCORED
        if scope == "global":
            assert as_set(mask) == bruteforce_topk(scores, k)


def test_k_with_a_total_records_the_ratio_and_equals_the_ratio_route():
    """What the benchmark's size solver needs: it knows k and the backbone size."""
    backbone = 85_800_000
    mask = shpeft.select(random_scores(), k=np.int64(86), total=backbone)
    assert mask.k == 86 and mask.total == backbone and mask.ratio == 86 / backbone
    assert as_set(mask) == as_set(shpeft.select(random_scores(), 86 / backbone, total=backbone))


@pytest.mark.parametrize("k, match", [
    (0, r"k must be an integer in \[1, total = 713\]"),
    (-3, r"k must be an integer in \[1, total = 713\]"),
    (714, r"k must be an integer in \[1, total = 713\]"),
    (2.0, "k must be an integer"),
    (True, "k must be an integer"),
])
def test_bad_k_is_refused(k, match):
    with pytest.raises(ValueError, match=match):
        shpeft.select(random_scores(), k=k)


def test_k_beyond_the_scored_weights_is_refused():
    with pytest.raises(ValueError, match="k = 714 exceeds the 713 eligible weights"):
        shpeft.select(random_scores(), k=714, total=10_000)


@pytest.mark.parametrize("kwargs", [{}, {"ratio": 0.1, "k": 5}])
def test_exactly_one_of_ratio_and_k(kwargs):
    with pytest.raises(ValueError, match="pass exactly one of ratio= and k="):
        shpeft.select(random_scores(), **kwargs)


def test_errors_come_before_the_work():
    """A bad scope or size is reported even when the scores would also be refused (NaN)."""
    bad = random_scores()
    bad["a"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="unknown scope 'layer'"):
        shpeft.select(bad, 0.1, scope="layer")
    with pytest.raises(ValueError, match="total must be"):
        shpeft.select(bad, 0.1, total=0)
