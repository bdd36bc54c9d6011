"""An encoder checkpoint scored on held-out identities (``encoder_eval.json``, ``.md``, a
scatter figure): parameter RMSE (in training stds) and Pearson r against the ground truth,
beside the baseline that always answers the training mean; per-vertex error (mm) on the
built-in head; PSPI and AU error of the intensity head from predicted and from true
parameters."""
from __future__ import annotations

import io

import numpy as np

from pipelines import storage
from faces.rig import RIG_AUS
from train.encoder import load_encoder
from train.encoder_job import head_metrics, param_metrics, predict, scores

VERTEX_FRAMES = 150  # frames posed for the per-vertex error (seeded sample)


def vertex_errors(p: dict, model, face, seed: int) -> dict[str, float]:
    """Mean per-vertex distance (mm, head vertices) to the true mesh: predicted shape and
    expression, predicted expression on the true shape, and the training means."""
    rng = np.random.default_rng([seed, 23])
    idx = rng.choice(len(p["y"]), min(VERTEX_FRAMES, len(p["y"])), replace=False)
    head = face.head_vertices()
    mean_e, mean_s = (getattr(model, f"{k}_mean").cpu().numpy() for k in ("expression", "shape"))
    errs: dict[str, list] = {"vertex_mm": [], "vertex_expression_mm": [],
                             "vertex_mean_baseline_mm": []}

    def dist(a, b):
        return float(np.linalg.norm((a - b)[head], axis=1).mean() * 1000)

    for i in idx:
        s, e = p["shape_true"][i], p["expression_true"][i]
        true = face.posed_params(s, e)
        s_hat = p["shape"][i] if model.shape is not None else s
        errs["vertex_mm"].append(dist(face.posed_params(s_hat, p["expression"][i]), true))
        errs["vertex_expression_mm"].append(dist(face.posed_params(s, p["expression"][i]), true))
        baseline_s = mean_s if model.shape is not None else s
        errs["vertex_mean_baseline_mm"].append(dist(face.posed_params(baseline_s, mean_e), true))
    return {k: float(np.mean(v)) for k, v in errs.items()}


def evaluate_encoder(folder: str, data: str, ids: list[int], cfg, loc=None,
                     name: str | None = None) -> dict:
    from faces.models import make_face_model
    from train.data import split_datasets

    model, face_model = load_encoder(folder)
    ds = split_datasets(data, {"test": ids}, model.cfg.img_size, None, cfg.train.decode_cpus,
                        seed=cfg.seed, crop=model.cfg.face_crop, params=True)["test"]
    p = predict(model, ds.iter_torch_batches(batch_size=64), "cpu", truth_head=True)
    std = model.expression_std.numpy()
    mean = np.tile(model.expression_mean.numpy(), (len(p["y"]), 1))
    r = {"frames": int(len(p["y"])), "face_model": face_model, **scores(model, p),
         "mean_baseline_expression_rmse": param_metrics(mean, p["expression_true"], std)["rmse"],
         "from_true_parameters": head_metrics(p, "_truth")}
    if face_model == "builtin" == cfg.face.model:
        r.update(vertex_errors(p, model, make_face_model(cfg.face), cfg.seed))
    if loc is not None:
        storage.write_json(loc, f"{name}/encoder_eval.json", r)
        storage.write_bytes(loc, f"{name}/encoder_eval.md", markdown(r).encode())
        storage.write_bytes(loc, f"{name}/encoder_scatter.png",
                            scatter_png(p, names=RIG_AUS if face_model == "builtin" else None))
    return r


def markdown(r: dict) -> str:
    t = r["from_true_parameters"]
    lines = [f"# Image -> 3D encoder ({r['face_model']} parameters), {r['frames']} test frames",
             "", "| | RMSE (training stds) | MAE | Pearson r (mean over varying parameters) |",
             "|---|---|---|---|",
             f"| expression | {r['expression_rmse']:.3f} | {r['expression_mae']:.4f} | "
             f"{r['expression_r']:.3f} ({r['expression_varying']}) |"]
    if "shape_rmse" in r:
        lines.append(f"| shape | {r['shape_rmse']:.3f} | {r['shape_mae']:.4f} | "
                     f"{r['shape_r']:.3f} ({r['shape_varying']}) |")
    lines += [f"| expression, training mean always | {r['mean_baseline_expression_rmse']:.3f} |"
              " | |", ""]
    if "vertex_mm" in r:
        lines += [f"Per-vertex error on the built-in head: {r['vertex_mm']:.2f} mm (predicted "
                  f"shape and expression), {r['vertex_expression_mm']:.2f} mm (predicted "
                  f"expression on the true shape); training means: "
                  f"{r['vertex_mean_baseline_mm']:.2f} mm.", ""]
    lines += ["| intensity head reads | PSPI macro AUROC | PSPI acc | PSPI MAE | AU MAE |",
              "|---|---|---|---|---|",
              f"| predicted parameters | {r['pspi_macro_auroc']:.3f} | {r['pspi_acc']:.3f} | "
              f"{r['pspi_mae']:.2f} | {r['au_mae']:.3f} |",
              f"| true parameters | {t['pspi_macro_auroc']:.3f} | {t['pspi_acc']:.3f} | "
              f"{t['pspi_mae']:.2f} | {t['au_mae']:.3f} |"]
    return "\n".join(lines) + "\n"


def scatter_png(p: dict, n: int = 6, names=None) -> bytes:
    """Predicted against true values of the first ``n`` varying expression parameters
    (``names``: what each parameter is, e.g. the built-in head's rig AUs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = np.flatnonzero(p["expression_true"].std(0) > 1e-8)[:n]
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(2.6 * max(1, len(cols)), 2.8),
                             constrained_layout=True, squeeze=False)
    for ax, j in zip(axes[0], cols):
        t, q = p["expression_true"][:, j], p["expression"][:, j]
        ax.scatter(t, q, s=4, alpha=0.4)
        lo, hi = min(t.min(), q.min()), max(t.max(), q.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(names[j] if names is not None and j < len(names) else f"parameter {j}",
                     fontsize=9)
        ax.set_xlabel("true", fontsize=8)
    axes[0][0].set_ylabel("predicted", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
