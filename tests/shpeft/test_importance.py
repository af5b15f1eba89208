"""Scores against a brute-force float64 reference computed one parameter at a time."""
import copy

import pytest
import torch
import torch.nn.functional as F

import shpeft
from shpeft.eligible import eligible_parameters


def reference_scores(model, batches, kind, estimator, lam=1.0):
    """The slow way: float64 model, torch.autograd.grad per batch *and per parameter*."""
    model = copy.deepcopy(model).double().eval()
    params = eligible_parameters(model)
    est = (lambda t: t.abs()) if estimator == "l1" else (lambda t: t**2)
    grads = {n: [] for n in params}
    for x, y in batches:
        for name, p in params.items():
            loss = F.cross_entropy(model(x.double()), y)
            (g,) = torch.autograd.grad(loss, p)
            grads[name].append(g)
    mean_est_g = {n: torch.stack([est(g) for g in gs]).mean(0) for n, gs in grads.items()}
    ta = {n: est(p.detach()) for n, p in params.items()}
    if kind == "task_specific":
        return mean_est_g
    if kind == "task_agnostic":
        return ta
    if kind == "taylor":
        return {n: est(params[n].detach() * torch.stack(gs).mean(0)) for n, gs in grads.items()}
    mean_ts = torch.cat([s.flatten() for s in mean_est_g.values()]).mean()
    mean_ta = torch.cat([s.flatten() for s in ta.values()]).mean()
    return {n: mean_est_g[n] / mean_ts + lam * ta[n] / mean_ta for n in params}


@pytest.mark.parametrize("kind", ["task_specific", "task_agnostic", "hybrid", "taylor"])
@pytest.mark.parametrize("estimator", ["l1", "l2"])
def test_scores_match_bruteforce_reference(tiny_vit, batches, kind, estimator):
    scores = shpeft.importance(tiny_vit, batches, kind=kind, estimator=estimator, lam=0.7)
    ref = reference_scores(tiny_vit, batches, kind, estimator, lam=0.7)
    assert scores.keys() == ref.keys()
    assert len(scores) == 8  # 2 blocks x (qkv, proj, fc1, fc2)
    for name in ref:
        assert scores[name].dtype == torch.float32
        torch.testing.assert_close(scores[name].double(), ref[name], rtol=2e-4, atol=1e-7)


def test_reference_gradient_matches_finite_differences(tiny_vit, batches):
    """The reference itself is checked against central differences on a few weights."""
    model = copy.deepcopy(tiny_vit).double().eval()
    x, y = batches[0]
    p = dict(model.named_parameters())["blocks.1.mlp.fc1.weight"]
    (g,) = torch.autograd.grad(F.cross_entropy(model(x.double()), y), p)
    for flat in [0, 17, 255]:
        with torch.no_grad():
            orig = p.view(-1)[flat].item()
            p.view(-1)[flat] = orig + 1e-6
            up = F.cross_entropy(model(x.double()), y).item()
            p.view(-1)[flat] = orig - 1e-6
            down = F.cross_entropy(model(x.double()), y).item()
            p.view(-1)[flat] = orig
        assert (up - down) / 2e-6 == pytest.approx(g.view(-1)[flat].item(), rel=1e-5, abs=1e-9)


def counting(batches, seen: list):
    """Yield ``batches``, appending to ``seen`` for each one actually drawn."""
    for b in batches:
        seen.append(1)
        yield b


def test_n_batches_limits_the_pass_and_state_is_restored(tiny_vit, batches):
    seen = []
    tiny_vit.train()
    tiny_vit.head.requires_grad_(False)
    one = shpeft.importance(tiny_vit, counting(batches, seen), kind="task_specific", n_batches=1)
    assert len(seen) == 1
    ref = reference_scores(tiny_vit, batches[:1], "task_specific", "l1")
    for n in ref:
        torch.testing.assert_close(one[n].double(), ref[n], rtol=2e-4, atol=1e-7)
    assert tiny_vit.training
    assert not tiny_vit.head.weight.requires_grad
    assert tiny_vit.blocks[0].attn.qkv.weight.requires_grad
    assert all(p.grad is None for p in tiny_vit.parameters())


def test_default_pass_covers_max_images(tiny_vit, batches):
    seen = []
    shpeft.importance(tiny_vit, counting(batches, seen), max_images=7)  # 6 images per batch -> 2 batches
    assert len(seen) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "magic"}, "unknown importance kind"),
        ({"estimator": "l3"}, "unknown estimator"),
        ({"n_batches": 0}, "n_batches must be >= 1"),
    ],
)
def test_bad_arguments_are_named(tiny_vit, batches, kwargs, message):
    with pytest.raises(ValueError, match=message):
        shpeft.importance(tiny_vit, batches, **kwargs)


def test_empty_loader_and_nan_loss_raise(tiny_vit, batches):
    with pytest.raises(ValueError, match="yielded no batches"):
        shpeft.importance(tiny_vit, [])
    x, y = batches[0]
    with pytest.raises(ValueError, match="task loss is nan"):
        shpeft.importance(tiny_vit, [(torch.full_like(x, float("nan")), y)])


def test_no_eligible_weights_raises():
    with pytest.raises(ValueError, match="no eligible weights"):
        shpeft.importance(torch.nn.Sequential(torch.nn.Linear(3, 3)), kind="task_agnostic")


def test_task_agnostic_needs_no_data(tiny_vit):
    scores = shpeft.importance(tiny_vit, kind="task_agnostic", estimator="l2")
    w = tiny_vit.blocks[0].mlp.fc2.weight
    assert torch.equal(scores["blocks.0.mlp.fc2.weight"], w.detach() ** 2)
