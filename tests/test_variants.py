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

LORA = TINY_TRAIN + ["train.model.lora.rank=8", "train.freeze_backbone_epochs=0"]


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
    from train.run import fetch_checkpoint

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
