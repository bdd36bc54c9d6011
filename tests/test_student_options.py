"""The student's options for using what the teacher knows (issue 31), each off by default:
heatmap regression through a decoder, AU-attention distillation, stride-8 tokens with
per-AU heads, the teacher's backbone as the start, a learnable feature projection. Each
changes the loss; at weight 0 (or off) training is exactly the old model's."""
import math

import pytest
import torch

from cluster.config import load_config
from tests.conftest import TINY_CONV, random_batch
from train import steps
from train.losses import attention_kl

BASE = TINY_CONV + ["train.augment=false", "train.model.img_size=64"]  # a 2 x 2 final grid


def _cfg(*extra):
    return load_config("local", BASE + list(extra)).train


def _batch(seed=0):
    return random_batch(size=64, seed=seed)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    w = steps.build(_cfg(), "teacher", None, "cpu", 7, 4)
    steps.set_frozen(w, False)
    for k in range(3):  # a teacher with opinions of its own
        steps.train_step(w, _batch(100 + k))
    return w.model.eval()


def _train(cfg, teacher, n_steps=2):
    torch.manual_seed(0)  # dropout: the same draws for every config
    w = steps.build(cfg, "student", teacher, "cpu", 0, 4)
    steps.set_frozen(w, False)
    logs = [steps.train_step(w, _batch(k)) for k in range(n_steps)]
    return w, logs


def _same_weights(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("weight,term", [("heatmap_distill", "loss_heatmap_distill"),
                                         ("au_attention_distill", "loss_au_attention")])
def test_a_new_term_changes_the_loss_and_at_weight_0_is_the_old_model(teacher, weight, term):
    old, old_logs = _train(_cfg(), teacher)
    zero, zero_logs = _train(_cfg(f"train.weights.{weight}=0"), teacher)
    assert zero_logs == old_logs and _same_weights(old, zero)
    assert term not in old_logs[0]
    on, on_logs = _train(_cfg(f"train.weights.{weight}=1.0"), teacher)
    assert on_logs[0][term] > 0
    assert on_logs[0]["loss"] == pytest.approx(old_logs[0]["loss"] + on_logs[0][term], rel=1e-5)
    assert not _same_weights(old, on)  # its gradient reached the student


def test_the_heatmap_decoder_is_training_only(teacher, tmp_path):
    from train.loop import load_model, save_model

    w, _ = _train(_cfg("train.weights.heatmap_distill=1.0"), teacher)
    assert w.decoder is not None
    pred = w.decoder(w.model(_batch()["image"])["tokens"])
    assert pred.shape == (8, 3, 4, 4)  # the 2 x 2 grid, upsampled twice
    save_model(w.model, tmp_path)
    assert not any("decoder" in k for k in torch.load(tmp_path / "model.pt"))
    assert load_model(tmp_path).cfg == w.model.cfg


def test_the_decoder_needs_no_teacher():
    w, logs = _train(_cfg("train.weights.heatmap_distill=1.0"), None)
    assert w.teacher is None and logs[0]["loss_heatmap_distill"] > 0


def test_local_tokens_resolve_the_face_and_off_is_the_old_model(teacher):
    old, old_logs = _train(_cfg(), teacher)
    off, off_logs = _train(_cfg("train.model.local_tokens=false",
                                "train.model.per_au_heads=false"), teacher)
    assert off_logs == old_logs and _same_weights(old, off)
    local, local_logs = _train(_cfg("train.model.local_tokens=true",
                                    "train.model.per_au_heads=true"), teacher)
    out = local.model(_batch()["image"])
    assert out["tokens"].shape[1] == (64 // 8) ** 2 and out["au_attention"].shape == (8, 6, 64)
    assert old.model(_batch()["image"])["tokens"].shape[1] == (64 // 32) ** 2
    assert local_logs[0]["loss_au"] != old_logs[0]["loss_au"]
    heads = local.model.au_head.mlps
    assert len(heads) == 6 and not torch.equal(heads[0][0].weight, heads[1][0].weight)
    # the backbone and the PSPI head start as the old model's (parts seeded by name)
    fresh = steps.build(_cfg("train.model.local_tokens=true"), "student", None, "cpu", 0, 4)
    plain = steps.build(_cfg(), "student", None, "cpu", 0, 4)
    assert all(torch.equal(a, b) for a, b in zip(fresh.model.backbone.state_dict().values(),
                                                 plain.model.backbone.state_dict().values()))


def test_local_tokens_refuse_a_vit():
    from cluster.config import ConfigError

    with pytest.raises(ConfigError, match="local_tokens"):
        load_config("local", ["train.model.backbone=vit_tiny_patch16_224",
                              "train.model.local_tokens=true"])


def test_student_from_the_teachers_backbone(teacher):
    w = steps.build(_cfg("train.student_init=teacher"), "student", teacher, "cpu", 0, 4)
    scratch = steps.build(_cfg(), "student", teacher, "cpu", 0, 4)
    t = teacher.backbone.state_dict()
    assert all(torch.equal(v, t[k]) for k, v in w.model.backbone.state_dict().items())
    assert not all(torch.equal(v, t[k]) for k, v in scratch.model.backbone.state_dict().items())
    h, s = w.model.pspi_head.state_dict(), scratch.model.pspi_head.state_dict()
    assert all(torch.equal(h[k], s[k]) for k in h)  # the heads stay the student's own
    with pytest.raises(ValueError, match="no teacher"):
        steps.build(_cfg("train.student_init=teacher"), "student", None, "cpu", 0, 4)


def test_a_learnable_projection_maps_features_even_at_equal_widths(teacher):
    old, old_logs = _train(_cfg(), teacher)
    lin, lin_logs = _train(_cfg("train.distill_projection=linear"), teacher)
    assert isinstance(old.projection.proj, torch.nn.Identity)
    assert isinstance(lin.projection.proj, torch.nn.Linear)
    assert lin_logs[0]["loss_feat_distill"] != old_logs[0]["loss_feat_distill"]


def test_attention_kl_pools_a_finer_student_grid_onto_the_teachers():
    t = torch.full((1, 1, 4), 0.25)
    s = torch.full((1, 1, 16), 1 / 16)  # uniform on 4 x 4 -> uniform on 2 x 2
    assert float(attention_kl(s, t)) == pytest.approx(0.0, abs=1e-6)
    peaked = torch.zeros(1, 1, 16)
    peaked[..., 0] = 1.0  # all in the top-left 2 x 2 block's first cell
    target = torch.tensor([[[1.0, 0, 0, 0]]])
    assert float(attention_kl(peaked, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(attention_kl(s, target)) == pytest.approx(math.log(4), rel=1e-4)
