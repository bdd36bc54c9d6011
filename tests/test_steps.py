"""The training steps in plain PyTorch: a real backbone freeze (also under 2 DDP processes),
the teacher left alone, paired flips, distillation that pulls, and the LR schedule."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from cluster.config import load_config
from tests.conftest import TINY_TRAIN
from tests.conftest import random_batch as _batch
from train import steps
from train.model import ViTPain


def _cfg(*extra):
    return load_config("local", TINY_TRAIN + ["train.augment=false", *extra]).train


def _backbone(w):
    return {k: v.clone() for k, v in w.model.backbone.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_backbone_gets_no_gradient_and_does_not_move():
    torch.manual_seed(0)
    w = steps.build(_cfg("train.lr_backbone=1e-3"), "teacher", None, "cpu", 0, 4)
    steps.set_frozen(w, True)
    before, heads = _backbone(w), copy.deepcopy(w.model.pspi_head.state_dict())
    for k in range(3):
        steps.train_step(w, _batch(seed=k))
        assert all(p.grad is None for p in w.model.backbone.parameters())
    assert _same(before, _backbone(w))  # bit-identical
    assert not _same(heads, w.model.pspi_head.state_dict())  # the heads trained
    steps.set_frozen(w, False)
    for k in range(3):
        steps.train_step(w, _batch(seed=10 + k))
    assert all(p.grad is not None for p in w.model.backbone.parameters())
    assert not _same(before, _backbone(w))


def test_clipping_covers_only_what_trains(monkeypatch):
    seen = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda ps, c: seen.append(list(ps)) or real(seen[-1], c))
    w = steps.build(_cfg(), "teacher", None, "cpu", 0, 4)
    steps.set_frozen(w, True)
    steps.train_step(w, _batch())
    backbone = {id(p) for p in w.model.backbone.parameters()}
    assert seen and not any(id(p) in backbone for p in seen[-1])


def _ddp_worker(rank, port, results):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    torch.manual_seed(0)  # the same start on both ranks
    w = steps.build(_cfg("train.lr_backbone=1e-3"), "teacher", None, "cpu", rank, 4, wrap=DDP)
    steps.set_frozen(w, True)
    before = _backbone(w)
    for k in range(2):
        steps.train_step(w, _batch(seed=10 * rank + k))
    frozen_ok = _same(before, _backbone(w)) and all(
        p.grad is None for p in w.model.backbone.parameters())
    steps.set_frozen(w, False)
    for k in range(2):
        steps.train_step(w, _batch(seed=100 + 10 * rank + k))
    after = _backbone(w)
    results[rank] = (frozen_ok, not _same(before, after),
                     {k: v.clone() for k, v in list(after.items())[:3]})
    dist.destroy_process_group()


def test_freeze_under_two_ddp_processes():
    import torch.multiprocessing as mp

    from tests.raycluster import free_port

    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(free_port(), results), nprocs=2, join=True)
    for rank in (0, 1):
        frozen_ok, moved, _ = results[rank]
        assert frozen_ok and moved, rank
    assert _same(results[0][2], results[1][2])  # DDP kept the ranks in step after unfreezing


def _teacher(seed):
    torch.manual_seed(seed)
    return ViTPain(_cfg().model, weights_follow=True)


def test_teacher_stays_unchanged_and_in_eval_mode():
    t = _teacher(1)
    state = copy.deepcopy(t.state_dict())
    w = steps.build(_cfg(), "student", t, "cpu", 0, 4)
    steps.set_frozen(w, False)
    steps.run_epoch(w, [_batch(seed=k) for k in range(3)])
    assert not w.teacher.training and _same(state, w.teacher.state_dict())


def test_kl_alone_moves_the_student_towards_the_teacher():
    t = _teacher(1)
    cfg = _cfg("train.weights.pspi=0", "train.weights.au=0", "train.weights.au_distill=0",
               "train.weights.feature_distill=0", "train.weights.pspi_distill=1",
               "train.lr_heads=3e-3", "train.lr_backbone=3e-3")
    torch.manual_seed(0)
    w = steps.build(cfg, "student", t, "cpu", 0, 10)
    steps.set_frozen(w, False)
    b = _batch(seed=5)

    def kl():
        w.model.eval()
        with torch.no_grad():
            zs, zt = w.model(b["image"])["pspi_logits"], t(b["heatmap"])["pspi_logits"]
        return float(F.kl_div(F.log_softmax(zs, -1), F.log_softmax(zt, -1), log_target=True,
                              reduction="batchmean"))

    start = kl()
    for _ in range(8):
        terms = steps.train_step(w, b)
    assert set(terms) >= {"loss_pspi_distill"} and kl() < 0.5 * start


def test_without_distillation_weights_the_teacher_plays_no_part():
    cfg = _cfg("train.weights.pspi_distill=0", "train.weights.au_distill=0",
               "train.weights.feature_distill=0")
    params = []
    for teacher_seed in (1, 2):  # two different teachers
        teacher = _teacher(teacher_seed)
        torch.manual_seed(0)
        w = steps.build(cfg, "student", teacher, "cpu", 0, 4)
        steps.set_frozen(w, False)
        terms = steps.run_epoch(w, [_batch(seed=k) for k in range(3)])
        params.append(copy.deepcopy(w.model.state_dict()))
        assert w.teacher is None and "loss_pspi_distill" not in terms
    assert _same(params[0], params[1])


def test_an_image_and_its_heatmap_flip_together():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    h = x * 10
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        xa, ha, _ = steps.augment(x, h, g, jitter=False)
        assert torch.equal(ha, xa * 10)  # flipped rows are the same rows in both
    flips = [not torch.equal(steps.augment(x, h, g, False)[0][0], x[0]) for _ in range(40)]
    assert 5 < sum(flips) < 35


def test_lr_schedule_value_by_value():
    cfg = _cfg("train.epochs=4", "train.freeze_backbone_epochs=1", "train.min_lr_ratio=0.1")
    backbone, heads = steps.lr_lambdas(cfg, steps_per_epoch=3)  # 12 steps in all
    assert [backbone(s) for s in range(3)] == [0.0, 0.0, 0.0]  # frozen epoch
    assert heads(0) == pytest.approx(1.0) and heads(12) == pytest.approx(0.1)
    assert heads(6) == pytest.approx(0.55)  # half-way down the cosine: 0.1 + 0.9 / 2
    assert heads(3) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert [backbone(s) for s in (3, 6, 12)] == [heads(3), heads(6), heads(12)]
    assert heads(50) == pytest.approx(0.1)  # stays at the floor
    assert all(heads(s) > heads(s + 1) for s in range(12))
