import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from benchmark.config import TrainConfig, TrainSettings, resolve_train
from benchmark.train import (
    DeviceBatches,
    classification_metrics,
    cosine_with_warmup,
    fit,
    param_groups,
    random_resized_crop_flip,
    set_drop_path,
)
from tests.baselines.helpers import tiny_vit


def test_batches_normalise_on_device_and_cover_every_image_once():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(10)
    batches = DeviceBatches(images, labels, batch_size=4, device=torch.device("cpu"), mean=(0.5, 0.5, 0.5),
                            std=(0.25, 0.25, 0.25), image_size=8, shuffle=True, seed=3)
    seen = torch.cat([y for _, y in batches])
    assert len(batches) == 3 and sorted(seen.tolist()) == list(range(10))
    x, y = next(iter(DeviceBatches(images, labels, batch_size=10, device=torch.device("cpu"),
                                   mean=(0.5,) * 3, std=(0.25,) * 3, image_size=8)))
    torch.testing.assert_close(x, (images.float() / 255 - 0.5) / 0.25)
    resized, _ = next(iter(DeviceBatches(images, labels, batch_size=10, device=torch.device("cpu"),
                                         mean=(0.5,) * 3, std=(0.25,) * 3, image_size=16)))
    assert resized.shape == (10, 3, 16, 16)


def test_same_seed_same_order_and_augmentation():
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    make = lambda: DeviceBatches(images, torch.arange(12), batch_size=5, device=torch.device("cpu"),  # noqa: E731
                                 mean=(0,) * 3, std=(1,) * 3, image_size=8, shuffle=True, augment=True, seed=7)
    for (xa, ya), (xb, yb) in zip(make(), make()):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_crop_flip_keeps_shape_and_value_range_and_follows_the_generator():
    x = torch.rand(8, 3, 16, 16)
    out = random_resized_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6  # bilinear + reflection
    assert not torch.allclose(out, x)
    assert torch.equal(out, random_resized_crop_flip(x, torch.Generator().manual_seed(0)))


def test_metrics_match_sklearn_and_auc_is_nan_when_a_class_is_absent():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 50)
    probs = rng.dirichlet(np.ones(3), 50)
    m = classification_metrics(labels, probs, 3)
    assert m["macro_f1"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro"))
    assert len(m["per_class_f1"]) == 3 and 0 <= m["macro_auc"] <= 1
    assert math.isnan(classification_metrics(np.zeros(5, dtype=int), probs[:5], 3)["macro_auc"])


def test_cosine_schedule_warms_up_then_decays_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, warmup_steps=4, total_steps=14)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_param_groups_split_head_lr_and_decay_over_trainable_parameters_only():
    model = tiny_vit()
    model.requires_grad_(False)
    for n in ("blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "head.weight", "head.bias"):
        model.get_parameter(n).requires_grad_(True)
    groups = param_groups(model, lr=1e-3, head_lr=1e-2, weight_decay=0.1,
                          no_decay={"blocks.0.attn.qkv.bias", "head.bias"})
    by_names = {tuple(g["names"]): (g["lr"], g["weight_decay"]) for g in groups}
    assert by_names == {
        ("blocks.0.attn.qkv.weight",): (1e-3, 0.1), ("blocks.0.attn.qkv.bias",): (1e-3, 0.0),
        ("head.weight",): (1e-2, 0.1), ("head.bias",): (1e-2, 0.0),
    }
    for g in groups:
        assert [model.get_parameter(n) for n in g["names"]] == g["params"]


def test_drop_path_rises_linearly_over_the_blocks_and_is_off_in_eval():
    model = set_drop_path(tiny_vit(), 0.2)
    assert isinstance(model.blocks[0].drop_path1, torch.nn.Identity)  # rate 0 at the first block
    assert model.blocks[1].drop_path1.drop_prob == pytest.approx(0.2) == model.blocks[1].drop_path2.drop_prob
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tiny_vit().eval()(x))
    assert all(isinstance(b.drop_path1, torch.nn.Identity) for b in set_drop_path(tiny_vit(), 0.0).blocks)


def test_fit_hands_the_optimizer_head_lr_and_no_decay_groups(monkeypatch):
    real, seen = torch.optim.AdamW, []

    def spy(groups, **kwargs):
        seen.extend({"names": g["names"], "lr": g["lr"], "weight_decay": g["weight_decay"]} for g in groups)
        return real(groups, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    make = lambda: DeviceBatches(images, torch.arange(8) % 3, batch_size=4, device=torch.device("cpu"),  # noqa: E731
                                 mean=(0.5,) * 3, std=(0.25,) * 3, image_size=16)
    model = tiny_vit()
    model.requires_grad_(False)
    model.blocks[0].norm1.requires_grad_(True)
    model.head.requires_grad_(True)
    cfg = TrainSettings(epochs=1, batch_size=4, lr=1e-3, head_lr=1e-2, weight_decay=0.5, drop_path=0.1,
                        warmup_epochs=1.0, grad_clip=1.0, augment=False, compile=False, progress=False)
    fit(model, make(), make(), cfg, 3, no_decay={"blocks.0.norm1.bias", "blocks.0.norm1.weight", "head.bias"})
    assert sorted((g["names"], g["lr"], g["weight_decay"]) for g in seen) == [
        (["blocks.0.norm1.weight", "blocks.0.norm1.bias"], 1e-3, 0.0),
        (["head.bias"], 1e-2, 0.0), (["head.weight"], 1e-2, 0.5),
    ]
    assert model.blocks[1].drop_path1.drop_prob == pytest.approx(0.1)


def test_resolved_settings_take_every_unset_value_from_the_recipe_and_move_the_head_lr_with_the_lr():
    class Recipe:
        lr, head_lr, weight_decay, drop_path = 1e-3, 1e-2, 1e-4, 0.1

    default = resolve_train(TrainConfig(lr_scale=2.0), Recipe)
    assert (default.lr, default.head_lr, default.weight_decay, default.drop_path) == (2e-3, 2e-2, 1e-4, 0.1)
    swept = resolve_train(TrainConfig(lr=3e-3), Recipe)
    assert swept.lr == 3e-3 and swept.head_lr == pytest.approx(3e-2)  # the recipe's head/method ratio kept
    fixed = resolve_train(TrainConfig(lr=1.0, head_lr=0.5, weight_decay=0.0, drop_path=0.0), Recipe)
    assert (fixed.lr, fixed.head_lr, fixed.weight_decay, fixed.drop_path) == (1.0, 0.5, 0.0, 0.0)
    assert None not in fixed.record().values() and "progress" not in fixed.record()


def test_the_perf_benchmark_times_the_training_loops_own_step():
    from benchmark.perf.measure import PerfConfig, _Trainer, build_backbone, _random_batches
    from benchmark.train import TrainStep

    cfg = PerfConfig(backbone="tiny_vit", batch_size=4, image_size=32, device="cpu")
    trainer = _Trainer("bitfit", None, cfg, build_backbone(cfg, torch.device("cpu")), _random_batches(cfg),
                       torch.device("cpu"))
    assert isinstance(trainer.train_step, TrainStep)
    assert {g["initial_lr"] for g in trainer.optimizer.param_groups} == {1e-3, 1e-2}  # BitFit recipe: method + head
    before = trainer.optimizer.param_groups[0]["lr"]
    trainer.step(0)
    assert trainer.train_step.steps == 1 and trainer.optimizer.param_groups[0]["lr"] != before  # the schedule steps
