"""benchmark.prompt_spread: feature spread and probe score of a backbone with untrained VPT prompts."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from benchmark import data
from benchmark.config import from_flat
from benchmark.prompt_spread import main, prompt_spread
from benchmark.cell import build_model, make_batches, seed_everything


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data.prepare("synthetic-medmnist", root, size=32)
    return from_flat({"dataset": "synthetic-medmnist", "method": "vpt-deep", "backbone": "tiny_vit",
                      "image_size": 32, "pretrained": False, "data_root": str(root)})


def test_without_prompts_the_row_is_the_plain_backbone_by_brute_force(cfg):
    row = prompt_spread(cfg, [0])[0]
    splits = data.load(cfg.dataset, root=cfg.data_root, size=32)
    seed_everything(cfg.seed)
    model = build_model(cfg, data.meta(cfg.dataset, cfg.data_root, 32)["num_classes"], torch.device("cpu")).eval()
    model.head = torch.nn.Identity()
    with torch.no_grad():
        feats = {s: torch.cat([model(x) for x, _ in make_batches(cfg, splits[s], model, torch.device("cpu"))]).numpy()
                 for s in ("train", "val")}
    assert row["feature_std"] == pytest.approx(np.mean([feats["train"][:, j].std() for j in range(feats["train"].shape[1])]), rel=1e-5)
    scaler = StandardScaler().fit(feats["train"])
    probe = LogisticRegression(max_iter=3000).fit(scaler.transform(feats["train"]), splits["train"].labels.numpy())
    expected = f1_score(splits["val"].labels.numpy(), probe.predict(scaler.transform(feats["val"])), average="macro")
    assert row["probe_f1"] == pytest.approx(expected)


def test_prompts_change_the_features_and_the_cli_prints_one_row_per_length(cfg, capsys):
    rows = prompt_spread(cfg, [0, 4])
    assert [r["prompts"] for r in rows] == [0, 4] and rows[0]["feature_std"] != rows[1]["feature_std"]
    main(["--dataset", cfg.dataset, "--backbone", "tiny_vit", "--image-size", "32", "--pretrained", "false",
          "--data-root", cfg.data_root, "--prompts", "0", "4", "--shallow"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["prompts", "feature_std", "probe_val_macro_f1"] and [l.split()[0] for l in lines[1:]] == ["0", "4"]
