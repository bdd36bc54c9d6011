"""``pain3d train rig`` (paper 001): a CGAN or CAAE learns expression parameters from AU
vectors on a dataset's own (AUs, expression_params) pairs, as a Ray Train job.

Each optimiser step trains the discriminators on one batch (real and generated rows in a
single forward pass), then the generators against them plus 001's L1 range regulariser
(and, CAAE, its L1 reconstruction). The networks are small and several take part in each
step, so the workers stay data-parallel by all-reducing every gradient before each step
(what DDP does) rather than wrapping four modules in DDP; every epoch checks that the
replicas still hold identical weights. A round of ``train.rig.eval_every`` steps is one
"epoch" for checkpoints and the progress bar.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from actors.learned_rig import LearnedRig, RigSpec, make_rig_net, save_rig
from faces.au import PSPI_AUS
from train import progress

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

PAIR_COLUMNS = ["identity", "expression", "face_model", "expression_params"] + list(PSPI_AUS)


@dataclass
class Pairs:
    """One row per (identity, expression): the AU levels and the expression parameters."""

    aus: np.ndarray  # (N, 6) float32
    params: np.ndarray  # (N, P) float32
    identity: np.ndarray  # (N,)
    face_model: str

    def neutral(self) -> np.ndarray:
        """The parameters of an expression with no AU (the face at rest)."""
        rest = np.flatnonzero(~self.aus.any(1))
        return self.params[rest[0]] if len(rest) else np.zeros(self.params.shape[1], np.float32)


def rig_pairs(data: str, ids: list[int]) -> Pairs:
    """The pairs of the given identities (a frame's views share them: one row each)."""
    from pipelines.layout3dpain import load_frames_columns

    t = load_frames_columns(data, PAIR_COLUMNS).to_pydict()
    keep, seen = [], set()
    wanted = set(int(i) for i in ids)
    for k, (i, e) in enumerate(zip(t["identity"], t["expression"])):
        if int(i) in wanted and (i, e) not in seen:
            seen.add((i, e))
            keep.append(k)
    models = {t["face_model"][k] for k in keep}
    if len(models) > 1:
        raise ValueError(f"{data} mixes face models {sorted(models)}; a rig learns one model's "
                         "parameters: train on a dataset of one face model")
    return Pairs(np.array([[t[a][k] for a in PSPI_AUS] for k in keep], np.float32).reshape(-1, 6),
                 np.array([t["expression_params"][k] for k in keep], np.float32),
                 np.array([t["identity"][k] for k in keep]), models.pop() if models else "")


def range_penalty(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """001's L_R: the L1 norm of how far each row lies outside [lower, upper], row mean."""
    return (F.relu(x - upper) + F.relu(lower - x)).sum(1).mean()


def soft_labels(levels: torch.Tensor, rc, scale: torch.Tensor, gen) -> torch.Tensor:
    """001's soft labels: y + N(mean, std) on the levels, then scaled to [-1, 1]. The noise
    is in FACS levels (a fifth of 0-5), so a binary AU (AU43, 0-1) gets a fifth of it."""
    noise = rc.soft_label_mean + rc.soft_label_std * torch.randn(levels.shape, generator=gen)
    y = levels + (noise * scale / 5 if rc.soft_label_std > 0 else 0)
    return 2 * y / scale - 1


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def average_gradients(params: list, world: int) -> None:
    """Data parallelism: every replica steps with the mean gradient of all replicas."""
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    torch.nn.utils.vector_to_parameters(flat, grads)


def _step(opt, loss: torch.Tensor, params: list, world: int) -> float:
    opt.zero_grad(set_to_none=False)
    loss.backward()
    average_gradients(params, world)
    opt.step()
    return float(loss.detach())


def cgan_step(net, opts, x, y, bounds, rc, gen, world: int) -> dict[str, float]:
    n = len(x)
    fake = net.generate(y, net.code(n, gen))
    d = net.discriminator(torch.cat([torch.cat([x, y], 1), torch.cat([fake.detach(), y], 1)]))
    loss_d = _step(opts[1], _bce(d[:n], 1.0) + _bce(d[n:], 0.0),
                   net.discriminator_parameters(), world)
    adv = _bce(net.discriminator(torch.cat([fake, y], 1)), 1.0)
    reg = range_penalty(fake, *bounds)
    loss_g = _step(opts[0], adv + rc.range_weight * reg, net.generator_parameters(), world)
    return {"loss_d": loss_d, "loss_g": loss_g, "loss_range": float(reg.detach())}


def caae_step(net, opts, x, y, bounds, rc, gen, world: int) -> dict[str, float]:
    n = len(x)
    code = net.encoder(x)
    recon = net.generate(y, code)
    fakes = [(recon, y)]
    if rc.retarget:  # each source also re-targeted to another row's AUs (not in 001)
        y2 = y[torch.randperm(n, generator=gen)]
        fakes.append((net.generate(y2, code), y2))
    prior = torch.rand(n, code.shape[1], generator=gen) * 2 - 1  # 001: a uniform P_z
    dz = net.prior_discriminator(torch.cat([prior, code.detach()]))
    dx = net.discriminator(torch.cat([torch.cat([x, y], 1)]
                                     + [torch.cat([f.detach(), c], 1) for f, c in fakes]))
    loss_d = _step(opts[1], _bce(dz[:n], 1.0) + _bce(dz[n:], 0.0) + _bce(dx[:n], 1.0)
                   + _bce(dx[n:], 0.0), net.discriminator_parameters(), world)
    l1 = (recon - x).abs().mean()
    reg = sum(range_penalty(f, *bounds) for f, _ in fakes)
    adv = _bce(net.prior_discriminator(code), 1.0) + _bce(net.discriminator(
        torch.cat([torch.cat([f, c], 1) for f, c in fakes])), 1.0)
    loss_g = _step(opts[0], rc.recon_weight * l1 + rc.range_weight * reg + adv,
                   net.generator_parameters(), world)
    return {"loss_d": loss_d, "loss_g": loss_g, "loss_recon": float(l1.detach()),
            "loss_range": float(reg.detach())}


STEPS = {"cgan": cgan_step, "caae": caae_step}


def validate(net, spec: RigSpec, val: dict) -> dict[str, float]:
    """Generated against real parameters of the validation pairs (standardised MAE; CAAE from
    the face at rest, CGAN from a fixed z), and the share of raw outputs out of bounds."""
    rig = LearnedRig(net, spec)
    src = np.repeat(val["neutral"][None], len(val["aus"]), 0)
    out = rig.generate(val["aus"], source=src, seed=0, clip=False)
    net.train()
    outside = (out < rig.lower - 1e-6) | (out > rig.upper + 1e-6)
    return {"val_param_mae": float(np.mean(np.abs(out - val["params"]) / rig.std)),
            "val_out_of_bounds": float(outside.mean())}


def _in_sync(net, world: int) -> bool:
    """Whether every replica holds the same weights (data parallelism working)."""
    if world == 1:
        return True
    s = float(sum(p.detach().double().sum() for p in net.parameters()))
    got = [None] * world
    torch.distributed.all_gather_object(got, s)
    return all(abs(g - got[0]) <= 1e-6 * max(1.0, abs(got[0])) for g in got)


def rig_train_func(config: dict) -> None:
    """Ray Train's per-worker function: every replica starts from the same weights (one
    seed) and samples its own batches from its share of the training pairs."""
    import ray.train

    rc, spec = config["rig"], config["spec"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    net, opts = build(spec, rc, config["seed"])
    start, history = _restore(net, opts)
    x_all = config["train_x"]
    mine = np.arange(rank, len(x_all), world)
    rng = np.random.default_rng([config["seed"], rank, start])
    gen = torch.Generator().manual_seed(config["seed"] * 1000 + rank * 10 + start)
    rounds = math.ceil(rc.iterations / rc.eval_every)
    for r in range(start, rounds):
        sums = train_round(net, opts, spec, rc, x_all[mine], config["train_aus"][mine], rng,
                           gen, world)
        metrics = {"epoch": r + 1, "epochs_done": r + 1,  # numbered from 1
                   "iterations": (r + 1) * rc.eval_every,
                   "train_loss": sums["loss_g"], **sums, "replicas_in_sync": _in_sync(net, world),
                   **validate(net, spec, config["val"])}
        history.append(metrics)
        _checkpoint(net, opts, spec, r, history, metrics, rank)
        if rank == 0:
            progress.write(config.get("progress_to"), metrics, rounds)


def build(spec: RigSpec, rc, seed: int):
    """The networks (the same initial weights on every replica: one seed) and the Adam
    optimisers of the generator side and of the discriminators."""
    torch.manual_seed(seed)
    net = make_rig_net(spec)
    opts = [torch.optim.Adam(ps, lr=rc.lr, betas=(0.5, 0.999))
            for ps in (net.generator_parameters(), net.discriminator_parameters())]
    return net, opts


def train_round(net, opts, spec: RigSpec, rc, x: np.ndarray, aus: np.ndarray, rng, gen,
                world: int = 1) -> dict[str, float]:
    """``rc.eval_every`` steps on batches drawn from standardised ``x`` and AU levels;
    the mean of each loss term."""
    scale = torch.as_tensor(spec.scale())
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    bounds = [torch.as_tensor((np.array(b, np.float32) - mean) / std)
              for b in (spec.lower, spec.upper)]
    sums: dict[str, float] = {}
    for _ in range(rc.eval_every):
        idx = rng.integers(0, len(x), rc.batch_size)
        y = soft_labels(torch.as_tensor(aus[idx]), rc, scale, gen)
        for k, v in STEPS[spec.model](net, opts, torch.as_tensor(x[idx]), y, bounds, rc, gen,
                                      world).items():
            sums[k] = sums.get(k, 0.0) + v / rc.eval_every
    return sums


def fit_pairs(pairs: Pairs, rc, seed: int = 0, rounds: int = 1) -> LearnedRig:
    """One process, no Ray: ``rounds`` x ``rc.eval_every`` steps on ``pairs`` (quick
    experiments and tests; ``pain3d train rig`` is the Ray Train job)."""
    spec = RigSpec.from_pairs(pairs.params, pairs.face_model, rc)
    net, opts = build(spec, rc, seed)
    x = (pairs.params - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    for _ in range(rounds):
        train_round(net, opts, spec, rc, x, pairs.aus, rng, gen)
    return LearnedRig(net, spec)


def _restore(net, opts) -> tuple[int, list]:
    from train.loop import load_state

    state = load_state()
    if state is None:
        return 0, []
    net.load_state_dict(state["net"])
    for o, s in zip(opts, state["opts"]):
        o.load_state_dict(s)
    return state["round"] + 1, state["history"]


def _checkpoint(net, opts, spec, r: int, history: list, metrics: dict, rank: int) -> None:
    from train.loop import report_checkpoint

    report_checkpoint(metrics, rank, lambda: {
        "net": net.state_dict(), "opts": [o.state_dict() for o in opts], "round": r,
        "history": history}, lambda folder: save_rig(net, spec, folder))


def train_rig(cfg: "Pain3DConfig", data: str, name: str, resume: bool = False,
              show_progress: bool = True):
    """Trains the rig of ``train.rig`` on ``data``'s training identities, then evaluates the
    best checkpoint on the test identities (``rig_eval.json``, ``rig_eval.md``, figures)."""
    from ray.train.torch import TorchTrainer

    from pipelines.layout3dpain import require_columns
    from train.progress import Watcher
    from train.rig_eval import evaluate_rig
    from train.run import plan_split, run_config, scaling
    from train.run_folder import finish, fit_run, open_run

    tc, rc = cfg.train, cfg.train.rig
    require_columns(data, PAIR_COLUMNS)
    loc, existing = open_run(tc.storage, name, resume)
    split = existing or plan_split(cfg, data)
    pairs = {k: rig_pairs(data, split[k]) for k in ("train", "val", "test")}
    train_p = pairs["train"]
    spec = RigSpec.from_pairs(train_p.params, train_p.face_model, rc)
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    loop = {"rig": rc, "spec": spec, "seed": cfg.seed, "progress_to": (tc.storage, name),
            "threads": max(1, int(tc.cpus_per_worker)),
            "train_x": (train_p.params - mean) / std, "train_aus": train_p.aus,
            "val": {"aus": pairs["val"].aus, "params": pairs["val"].params,
                    "neutral": train_p.neutral()}}
    rounds = math.ceil(rc.iterations / rc.eval_every)
    files = {"split.json": split, "config.json": {"mode": "rig", "data": data,
                                                  "config": cfg.to_dict()}}
    result = fit_run(loc, name, existing, [data], files, lambda: TorchTrainer(
        rig_train_func, train_loop_config=loop, scaling_config=scaling(tc),
        run_config=run_config(tc, loc, name, "val_param_mae", "min")),
        Watcher(tc.storage, name, rounds, f"rig {name}", metric="val_param_mae")
        if show_progress else None)
    res = finish(result, loc, name, tc.storage, split, "val_param_mae", "min")
    from train.run_folder import fetch_checkpoint

    rig = LearnedRig.load(fetch_checkpoint(res.best_checkpoint, ("rig.pt", "rig.json")))
    report = evaluate_rig(rig, pairs, cfg, loc, name)
    return res, report
