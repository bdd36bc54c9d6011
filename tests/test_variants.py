"""The authors' training options (issue 14), each checked on tiny random models: LoRA adapters
through peft leave the base bit-identical, train at a tenth of the heads' rate, and make a
checkpoint of adapters and heads that reloads to the same outputs."""
import os

import pytest
import torch

from cluster.config import load_config
from tests.conftest import TINY_TRAIN
from train import steps
from train.loop import load_model, save_model

LORA = TINY_TRAIN + ["train.model.lora.rank=8", "train.freeze_backbone_epochs=0",
                     "train.model.lora.targets=[qkv, proj]"]


def _batch():
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(4, 3, 32, 32, generator=g),
            "heatmap": torch.randn(4, 3, 32, 32, generator=g),
            "pspi": torch.tensor([0, 3, 5, 9]), "aus": torch.rand(4, 6, generator=g)}


def test_lora_step_keeps_the_base_and_trains_the_adapters(tmp_path):
    cfg = load_config("local", LORA).train
    w = steps.build(cfg, "student", None, "cpu", 0, 10)
    steps.set_frozen(w, False)
    named = dict(w.model.backbone.named_parameters())
    base = {n: p.detach().clone() for n, p in named.items() if "lora_" not in n}
    lora = {n: p.detach().clone() for n, p in named.items() if "lora_" in n}
    assert lora and all(not named[n].requires_grad for n in base)
    assert {n.split(".lora_")[0].split(".")[-1] for n in lora} == {"qkv", "proj"}
    assert [g["lr"] for g in w.opt.param_groups] == pytest.approx([0.1 * cfg.lr_heads,
                                                                   cfg.lr_heads])
    steps.train_step(w, _batch())
    assert all(torch.equal(named[n], v) for n, v in base.items())  # bit-identical
    assert sum(not torch.equal(named[n], v) for n, v in lora.items()) == len(lora)
    # the checkpoint: adapters and heads only, under a tenth of a full one, same outputs back
    save_model(w.model, tmp_path / "lora")
    full = steps.build(load_config("local", TINY_TRAIN).train, "student", None, "cpu", 0, 10)
    save_model(full.model, tmp_path / "full")
    size = os.path.getsize(tmp_path / "lora" / "model.pt")
    assert size < 0.1 * os.path.getsize(tmp_path / "full" / "model.pt")
    back = load_model(tmp_path / "lora")
    w.model.eval(), back.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(back(x)["pspi_logits"], w.model(x)["pspi_logits"])
    # adapters alone on another base would not reproduce it: the base is part of the contract
    other = load_config("local", LORA + ["train.model.lora.base_seed=1"]).train.model
    state = torch.load(tmp_path / "lora" / "model.pt", weights_only=True)
    from train.model import ViTPain

    moved = ViTPain(other, weights_follow=True)
    moved.load_saved_state(state)
    moved.eval()
    assert not torch.equal(moved(x)["pspi_logits"], w.model(x)["pspi_logits"])


def test_frozen_epochs_freeze_the_adapters_too():
    cfg = load_config("local", LORA).train
    w = steps.build(cfg, "student", None, "cpu", 0, 10)
    steps.set_frozen(w, True)
    assert not any(p.requires_grad for p in w.model.backbone.parameters())
    steps.set_frozen(w, False)
    trainable = [n for n, p in w.model.backbone.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.slow  # ~40 s: one epoch of a tiny LoRA student on 2 gloo workers
def test_lora_trains_under_two_ddp_workers(data10, ray_local, tmp_path):
    from pathlib import Path

    from cluster.cli import main
    from train.model import ViTPain
    from train.run_folder import fetch_checkpoint

    assert main(["train", "student", "--data", data10, "--name", "lora", "--no-distill",
                 f"train.storage={tmp_path}", "train.epochs=1", "train.num_workers=2"]
                + LORA) == 0
    best = (tmp_path / "lora" / "best_checkpoint.txt").read_text()
    model = load_model(fetch_checkpoint(best))
    assert model.cfg.lora.rank == 8
    trained = torch.load(Path(best) / "state.pt", weights_only=False)["net"]
    fresh = ViTPain(model.cfg, weights_follow=True).state_dict()
    base = [k for k in fresh if k.startswith("backbone.") and "lora_" not in k]
    assert base and all(torch.equal(trained[k], fresh[k]) for k in base)
    assert any(not torch.equal(trained[k], fresh[k]) for k in fresh if "lora_B" in k)


@pytest.mark.parametrize("head,keys", [
    ("classification", {"pspi_logits"}), ("regression", {"pspi_reg", "binary_logits"}),
    ("both", {"pspi_logits", "pspi_reg", "binary_logits"})])
def test_heads_give_their_outputs_and_loss_terms(head, keys):
    cfg = load_config("local", TINY_TRAIN + [f"train.model.head={head}"]).train
    w = steps.build(cfg, "student", None, "cpu", 0, 10)
    steps.set_frozen(w, False)
    out = w.model(_batch()["image"])
    assert keys <= set(out) and not ({"pspi_logits", "pspi_reg", "binary_logits"} - keys) & set(out)
    if "pspi_reg" in out:
        assert out["pspi_reg"].shape == (4,) and ((0 <= out["pspi_reg"]) & (out["pspi_reg"] <= 1)).all()
        assert out["binary_logits"].shape == (4, 3)
    terms = steps.train_step(w, _batch())
    assert ("loss_pspi" in terms) == (head != "regression")
    assert ("loss_pspi_reg" in terms) == ("loss_binary" in terms) == (head != "classification")


def test_regression_loss_is_mse_of_pspi_over_16_and_bce_at_the_thresholds():
    import torch.nn.functional as F

    from train.losses import LossWeights, supervised

    pspi = torch.tensor([0, 1, 2, 5])
    out = {"au": torch.zeros(4, 6), "pspi_reg": torch.tensor([0.0, 0.1, 0.2, 0.25]),
           "binary_logits": torch.tensor([[-1.0, 0, 1]] * 4)}
    total, parts = supervised(out, pspi, torch.zeros(4, 6), LossWeights(au=0, binary=2))
    mse = ((0 - 0) ** 2 + (0.1 - 1 / 16) ** 2 + (0.2 - 2 / 16) ** 2 + (0.25 - 5 / 16) ** 2) / 4
    assert float(parts["reg_mse"]) == pytest.approx(mse)
    target = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.float32)
    bce = F.binary_cross_entropy_with_logits(out["binary_logits"], target)
    assert float(parts["bce"]) == pytest.approx(float(bce))
    assert float(total) == pytest.approx(mse + 2 * float(bce))
    assert "ce" not in parts


def test_regression_and_binary_heads_produce_the_metrics():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from train.metrics import compute_metrics, pain_only_metrics

    y = np.array([0, 1, 2, 4, 4, 9])
    reg = np.array([0.2, 1.4, 1.6, 4.0, 6.7, 8.0]) / 16  # rounds to 0, 1, 2, 4, 7, 8
    binary = np.array([[0.1, 0.1, 0.0], [0.7, 0.2, 0.1], [0.8, 0.6, 0.2], [0.9, 0.9, 0.8],
                       [0.6, 0.7, 0.9], [1.0, 0.9, 0.95]])
    m = compute_metrics(None, y, reg=reg, binary=binary)
    assert m["acc"] == pytest.approx(4 / 6) and m["acc_pm1"] == pytest.approx(5 / 6)
    assert m["mae_argmax"] == pytest.approx((0 + 0 + 0 + 0 + 3 + 1) / 6)
    assert m["mae_expected"] == pytest.approx(np.mean(np.abs(reg * 16 - y)))
    assert m["pearson_r"] == pytest.approx(np.corrcoef(reg * 16, y)[0, 1])
    for i, k in enumerate((1, 2, 3)):  # AUROC at PSPI >= k from the binary heads
        assert m[f"auroc_pspi_ge{k}"] == pytest.approx(roc_auc_score(y >= k, binary[:, i]))
    assert m["f1_pspi_ge2_at_0.5"] == pytest.approx(1.0)  # 0.6, 0.9, 0.7, 0.9 vs 0.1, 0.2
    near = [roc_auc_score(y == k, -np.abs(reg * 16 - k)) for k in (0, 1, 2, 4, 9)]
    assert m["macro_auroc"] == pytest.approx(np.mean(near))
    logits = np.log(np.full((6, 17), 1e-6) + np.eye(17)[y])  # right on every frame
    both = compute_metrics(logits, y, reg=reg, binary=binary)
    assert both["acc"] == 1.0 and both["reg_acc"] == pytest.approx(4 / 6)
    assert both["bin_auroc_pspi_ge3"] == pytest.approx(m["auroc_pspi_ge3"])
    po = pain_only_metrics(None, y, reg=reg)  # PSPI 1-16: 5 frames, estimate clipped to >= 1
    assert po["frames"] == 5 and po["acc"] == pytest.approx(3 / 5)


def test_weighted_sampling_evens_out_the_pspi_levels():
    import numpy as np
    import pyarrow as pa

    from train.data import resample
    from train.losses import class_weights

    pspi = [0] * 600 + [3] * 200 + [8] * 100 + [15] * 20
    t = pa.table({"sample_id": [f"s{i}" for i in range(len(pspi))], "pspi": pspi})
    w = class_weights(pspi, "inverse")
    out = resample(t, w, seed=0)
    counts = np.bincount(out.column("pspi").to_numpy(), minlength=17)[[0, 3, 8, 15]]
    assert abs(out.num_rows - len(pspi)) < 30  # an epoch keeps its length
    assert (np.abs(counts - len(pspi) / 4) < 0.1 * len(pspi) / 4).all()  # equal within 10%
    assert resample(t, w, seed=0).equals(out) and not resample(t, w, seed=1).equals(out)


@pytest.mark.parametrize("name,patch", [("vit_small_patch14_dinov2", 14),
                                        ("vit_small_patch16_dinov3", 16)])
def test_dino_backbones_by_timm_name_with_weights_from_a_local_file(name, patch, tmp_path):
    import timm
    from safetensors.torch import save_file

    from train.model import ModelConfig, ViTPain

    kw = {"depth": 2, "embed_dim": 64, "num_heads": 2}
    size = 4 * patch
    torch.manual_seed(3)
    src = timm.create_model(name, num_classes=0, img_size=size, **kw)
    save_file(src.state_dict(), str(tmp_path / "model.safetensors"))
    cfg = ModelConfig(backbone=name, backbone_kwargs=kw, img_size=size, head_hidden=32,
                      pretrained_file=str(tmp_path / "model.safetensors"))
    m = ViTPain(cfg)
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in m.backbone.state_dict().items())
    out = m(torch.randn(2, 3, size, size))
    assert out["pspi_logits"].shape == (2, 17) and out["au_attention"].shape == (2, 6, 16)
    # LoRA on qkv and proj of the same base file: the base unchanged, adapters present
    cfg.lora.rank = 4
    lm = ViTPain(cfg)
    lora = [n for n, _ in lm.backbone.named_parameters() if "lora_" in n]
    assert {n.split(".lora_")[0].split(".")[-1] for n in lora} == {"qkv", "proj"}
    base = {n: p for n, p in lm.backbone.named_parameters() if "lora_" not in n}
    assert all(torch.equal(p, src.state_dict()[n.replace(".base_layer", "")])
               for n, p in base.items())


@pytest.mark.slow  # ~4 min: a teacher and five students of the new rows, 2 gloo workers each
def test_each_variant_trains_under_two_ddp_workers_as_ablation_rows(data10, ray_local, tmp_path):
    import json

    from cluster.cli import main

    rows = ["neutral_reference_distill", "neutral_reference_shared", "lora", "both_heads",
            "weighted_sampling"]
    assert main(["ablate", "--data", data10, "--seeds", "1", "--name", "abl", "--rows",
                 ",".join(rows), f"train.storage={tmp_path}", "train.epochs=1",
                 "train.num_workers=2", "train.eval.neutral_shots=3",
                 "train.model.lora.targets=[qkv, proj]"] + TINY_TRAIN) == 0
    s = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert s["failures"] == [] and sorted(s["rows"]) == sorted(rows)  # the teacher: not shown
    assert (tmp_path / "abl" / "teacher-seed0").is_dir()

    def config(row):
        return json.loads((tmp_path / "abl" / f"{row}-seed0" / "config.json").read_text())

    model = {r: config(r)["config"]["train"]["model"] for r in rows}
    assert config("neutral_reference_distill")["teacher"] and model[rows[0]]["neutral_reference"]
    assert model["neutral_reference_shared"]["shared_encoder"] is True
    assert model["lora"]["lora"]["rank"] == 8 and model["both_heads"]["head"] == "both"
    assert len(config("weighted_sampling")["sampling_weights"]) == 17
    assert "reg_acc" in s["runs"]["both_heads"][0]["all"]
    for r in rows:
        assert (tmp_path / "abl" / f"{r}-seed0" / "history.json").is_file()
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "+ AU queries + neutral reference + distillation" in md and "| — |" in md


@pytest.mark.slow  # ~1 min: a DINOv2-style student with every option, then multi-shot scoring
def test_dino_neutral_regression_student_under_two_workers(data10, ray_local, tmp_path, capsys):
    import json

    from cluster.cli import main

    dino = ["train.model.backbone=vit_small_patch14_dinov2", "train.model.img_size=28",
            "train.model.backbone_kwargs={depth: 2, embed_dim: 64, num_heads: 2}",
            "train.model.head_hidden=32", "train.batch_size=16", "train.cpus_per_worker=0.5",
            "train.use_gpu=false", "train.model.neutral_reference=true",
            "train.model.head=regression", "train.sampling=weighted",
            "train.eval.neutral_shots=3"]
    assert main(["train", "student", "--data", data10, "--name", "dino", "--no-distill",
                 f"train.storage={tmp_path}", "train.epochs=2", "train.num_workers=2"]
                + dino) == 0
    history = json.loads((tmp_path / "dino" / "history.json").read_text())
    assert len(history) == 2 and "loss_pspi_reg" in history[0] and "loss_pspi" not in history[0]
    assert 0 <= history[-1]["val_macro_auroc"] <= 1 and "val_auroc_pspi_ge1" in history[-1]
    best = (tmp_path / "dino" / "best_checkpoint.txt").read_text()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", best, "--data", data10]) == 0
    report = json.loads((tmp_path / "dino" / "eval-test" / "metrics.json").read_text())
    assert report["neutral_shots"] == 3 and "auroc_pspi_ge3" in report["metrics"]
    assert report["pain_only"]["frames"] > 0
