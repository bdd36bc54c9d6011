"""``pain3d train encoder`` (paper 002) as a Ray Train job (DDP), and its evaluation on the
test identities: parameter error and correlation, per-vertex error in mm on the built-in
head, and PSPI / AU error of the intensity head read from the predicted parameters (and, for
reference, from the true ones)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from train import progress
from train.encoder import ExpressionEncoder, encoder_loss, save_encoder
from train.seeds import derive

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

KEYS = ("expression", "shape")


@torch.no_grad()
def predict(model: ExpressionEncoder, batches, device, truth_head: bool = False) -> dict:
    """Per frame: predicted and true parameters (face-model units), PSPI logits, AUs; with
    ``truth_head`` also the intensity head's answers from the true parameters."""
    model.eval()
    got: dict[str, list] = {}
    for b in batches:
        out = model(b["image"].to(device).float())
        rows = {"expression": model.raw(out), "shape": model.raw(out, "shape"),
                "expression_true": b["expression_params"], "shape_true": b["shape_params"],
                "logits": out["pspi_logits"], "au": out["au"], "y": b["pspi"],
                "au_true": b["aus"]}
        if truth_head:
            true = torch.cat([model.standardise(k, b[f"{k}_params"].to(device).float())
                              for k in KEYS if k == "expression" or model.shape is not None], 1)
            t = model.intensity(true)
            rows.update(logits_truth=t["pspi_logits"], au_truth=t["au"])
        for k, v in rows.items():
            got.setdefault(k, []).append(v.float().cpu().numpy() if torch.is_tensor(v) else v)
    return {k: np.concatenate(v) for k, v in got.items()}


def param_metrics(pred: np.ndarray, true: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """RMSE in training stds, MAE in the face model's units, and the mean Pearson r over the
    parameters that vary in ``true``."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    vary = true.std(0) > 1e-8
    with np.errstate(invalid="ignore", divide="ignore"):  # a (near-)constant answer: no r
        r = [np.corrcoef(pred[:, j], true[:, j])[0, 1] for j in np.flatnonzero(vary)]
    r = [v for v in r if np.isfinite(v)]
    return {"rmse": float(np.sqrt(np.mean(((pred - true) / std) ** 2))),
            "mae": float(np.abs(pred - true).mean()),
            "r": float(np.mean(r)) if r else float("nan"), "varying": int(vary.sum())}


def head_metrics(p: dict, suffix: str = "") -> dict[str, float]:
    from train.metrics import compute_metrics

    m = compute_metrics(p["logits" + suffix], p["y"], p["au" + suffix], p["au_true"])
    return {"pspi_macro_auroc": m["macro_auroc"], "pspi_acc": m["acc"],
            "pspi_mae": m["mae_argmax"], "au_mae": float(np.abs(p["au" + suffix]
                                                                 - p["au_true"]).mean())}


def scores(model: ExpressionEncoder, p: dict) -> dict[str, float]:
    out = {}
    for k in KEYS:
        if k == "shape" and model.shape is None:
            continue
        std = getattr(model, f"{k}_std").cpu().numpy()
        out.update({f"{k}_{m}": v for m, v in param_metrics(p[k], p[f"{k}_true"], std).items()})
    return {**out, **head_metrics(p)}


def encoder_train_func(config: dict) -> None:
    """Ray Train's per-worker function: DDP over the encoder and its intensity head."""
    import ray.train
    import ray.train.torch

    from train.loop import _ddp, epoch_batches
    from train.steps import lr_lambdas

    cfg, ctx = config["train"], ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(derive(config["seed"], "rank", rank))  # never seed + rank
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    model = ExpressionEncoder(cfg.model, *config["dims"], cfg.encoder.head_hidden).to(device)
    model.set_stats(config["stats"])
    opt = torch.optim.AdamW([
        {"params": model.backbone.parameters(), "lr": cfg.lr_backbone},
        {"params": model.head_parameters(), "lr": cfg.lr_heads}], weight_decay=cfg.weight_decay)
    per_epoch = max(1, math.ceil(config["n_train"] / (cfg.batch_size * world)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambdas(cfg, per_epoch))
    net = _ddp(model) if world > 1 else model
    start, history = _restore(model, opt, sched)
    train_shard = config.get("train_cached")  # a CachedSplit, else a Ray Data shard
    if train_shard is None:
        train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    for epoch in range(start, cfg.epochs):
        net.train()
        sums: dict[str, list] = {}
        for b in epoch_batches(train_shard, cfg, config["seed"], epoch, rank, device, world):
            loss, parts = encoder_loss(model, net(b["image"].float()), b, cfg.encoder)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            for k, v in {"train_loss": float(loss.detach()), **parts}.items():
                sums.setdefault(k, []).append(v)
        metrics = {"epoch": epoch + 1, "epochs_done": epoch + 1,  # numbered from 1
                   **{k: float(np.mean(v)) for k, v in sums.items()},
                   **_validate(model, val_shard, device, rank, world)}
        history.append(metrics)
        _checkpoint(model, opt, sched, epoch, history, metrics, rank, config["face_model"])
        if rank == 0:
            progress.write(config.get("progress_to"), metrics, cfg.epochs)


def _validate(model, shard, device, rank: int, world: int) -> dict:
    from train.loop import gather

    p = gather(predict(model, shard.iter_torch_batches(batch_size=64), device), world)
    return {f"val_{k}": v for k, v in scores(model, p).items()} if rank == 0 else {}


def _restore(model, opt, sched) -> tuple[int, list]:
    from train.loop import load_state

    state = load_state()
    if state is None:
        return 0, []
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    return state["epoch"] + 1, state["history"]


def _checkpoint(model, opt, sched, epoch, history, metrics, rank, face_model) -> None:
    from train.loop import report_checkpoint

    report_checkpoint(metrics, rank, lambda: {
        "model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
        "epoch": epoch, "history": history},
        lambda folder: save_encoder(model, folder, face_model))


def _stats(data: str, ids: list[int]) -> tuple[dict, str]:
    """Mean and std of each parameter over the training identities' frames, and their face
    model."""
    from actors.learned_rig import standardisation
    from train.data import identity_frames

    t = identity_frames(data, ids, ["face_model", "expression_params", "shape_params"])
    out = {}
    for k in KEYS:
        out[f"{k}_mean"], out[f"{k}_std"] = standardisation(t.column(f"{k}_params").to_pylist())
    models = set(t.column("face_model").to_pylist())
    if len(models) != 1:
        raise ValueError(f"{data} mixes face models {sorted(models)}; an encoder regresses one "
                         "model's parameters: train on a dataset of one face model")
    return out, models.pop()


def train_encoder(cfg: "Pain3DConfig", data: str, name: str, resume: bool = False,
                  show_progress: bool = True):
    """Trains the encoder on ``data``'s training identities (best epoch by validation
    expression RMSE), then evaluates the best checkpoint on the test identities."""
    from ray.train import DataConfig
    from ray.train.torch import TorchTrainer

    from pipelines.layout3dpain import require_columns
    from train.data import PARAM_COLUMNS, READ_COLUMNS, split_datasets
    from train.progress import Watcher
    from train.run import count_frames, plan_split, run_config, scaling
    from train.run_folder import fetch_checkpoint, finish, fit_run, open_run

    tc = cfg.train
    require_columns(data, READ_COLUMNS + list(PARAM_COLUMNS))
    loc, existing = open_run(tc.storage, name, resume)
    split = existing or plan_split(cfg, data)
    stats, face_model = _stats(data, split["train"])
    dims = (len(stats["expression_mean"]), len(stats["shape_mean"]) if tc.encoder.shape else 0)
    if not tc.encoder.shape:
        stats = {k: v for k, v in stats.items() if k.startswith("expression")}
    n_train = count_frames(data, split["train"], tc.max_frames)

    def trainer():
        ds = split_datasets(data, {k: split[k] for k in ("train", "val")}, tc.model.img_size,
                            tc.max_frames, tc.decode_cpus, seed=cfg.seed,
                            crop=tc.model.face_crop, cache=tc.cache_decoded, params=True)
        cached = ds.pop("train") if tc.cache_decoded else None  # a CachedSplit
        return TorchTrainer(
            encoder_train_func, train_loop_config={
                "train": tc, "seed": cfg.seed, "dims": dims, "stats": stats, "n_train": n_train,
                "face_model": face_model, "progress_to": (tc.storage, name),
                "train_cached": cached},
            scaling_config=scaling(tc), datasets=ds,
            dataset_config=DataConfig(datasets_to_split=list(ds)),
            run_config=run_config(tc, loc, name, "val_expression_rmse", "min"))

    files = {"split.json": split, "config.json": {"mode": "encoder", "data": data,
                                                  "config": cfg.to_dict()}}
    result = fit_run(loc, name, existing, [data], files, trainer, Watcher(
        tc.storage, name, tc.epochs, f"encoder {name}", metric="val_expression_r")
        if show_progress else None)
    res = finish(result, loc, name, tc.storage, split, "val_expression_rmse", "min")
    folder = fetch_checkpoint(res.best_checkpoint, ("encoder.pt", "encoder.json"))
    from train.encoder_eval import evaluate_encoder

    return res, evaluate_encoder(folder, data, split["test"], cfg, loc, name)
