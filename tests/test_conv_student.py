"""The laptop preset's convolutional ViTPain: AU queries attend over the feature map's cells,
the freeze also holds its batch-norm statistics, and old checkpoints keep their whole frames."""
import json

import pytest
import torch

from cluster.config import load_config
from tests.conftest import TINY_CONV
from train import steps
from train.loop import load_model, save_model
from train.model import ModelConfig, ViTPain, create_backbone


def _conv(**kw):
    return ModelConfig(backbone="resnet18", backbone_kwargs={"channels": [8, 8, 16, 16]},
                       img_size=64, head_hidden=32, **kw)


def test_au_queries_attend_over_the_feature_map():
    torch.manual_seed(0)
    m = ViTPain(_conv()).eval()
    x = torch.randn(3, 3, 64, 64)
    out = m(x)
    assert out["au_attention"].shape == (3, 6, 4)  # 64 px / stride 32 = 2 x 2 cells
    assert torch.allclose(out["au_attention"].sum(-1), torch.ones(3, 6))
    cls, patches = m.tokens(x)
    assert patches.shape == (3, 4, 16) and torch.allclose(cls, patches.mean(1))
    assert out["pspi_logits"].shape == (3, 17) and (out["au"] >= 0).all()
    # the baseline reads its AUs from the pooled token instead
    assert "au_attention" not in ViTPain(_conv(au_queries=False))(x)


def test_backbone_errors_other_than_img_size_are_kept():
    create_backbone(_conv(), warn=False)  # a conv net takes no img_size: dropped, no error
    with pytest.raises(TypeError, match="no_such_argument"):
        create_backbone(ModelConfig(backbone="resnet18", backbone_kwargs={"no_such_argument": 1}),
                        warn=False)


def test_frozen_conv_backbone_keeps_weights_and_batchnorm_statistics():
    cfg = load_config("local", TINY_CONV + ["train.augment=false", "train.lr_backbone=1e-3"]).train
    assert cfg.model.backbone == "resnet18"  # the preset's family
    torch.manual_seed(0)
    w = steps.build(cfg, "teacher", None, "cpu", 0, 4)
    g = torch.Generator().manual_seed(0)
    batches = [{"image": torch.randn(8, 3, 32, 32, generator=g),
                "heatmap": torch.randn(8, 3, 32, 32, generator=g) + 1,
                "pspi": torch.randint(0, 17, (8,), generator=g),
                "aus": torch.rand(8, 6, generator=g)} for _ in range(3)]
    state = {k: v.clone() for k, v in w.model.backbone.state_dict().items()}
    assert any("running_mean" in k for k in state)
    steps.set_frozen(w, True)
    steps.run_epoch(w, batches)
    assert all(torch.equal(state[k], v) for k, v in w.model.backbone.state_dict().items())
    steps.set_frozen(w, False)
    steps.run_epoch(w, batches)
    after = w.model.backbone.state_dict()
    moved = {k for k in state if not torch.equal(state[k], after[k])}
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)


def test_checkpoints_from_before_the_crop_load_without_it(tmp_path):
    save_model(ViTPain(_conv(), weights_follow=True), tmp_path)
    assert load_model(tmp_path).cfg.face_crop is True
    old = json.loads((tmp_path / "model_config.json").read_text())
    del old["face_crop"]
    (tmp_path / "model_config.json").write_text(json.dumps(old))
    assert load_model(tmp_path).cfg.face_crop is False
