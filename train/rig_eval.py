"""A learned rig scored as paper 001 scores its generators.

- **AU read-back**: an AU reader (one RBF support vector regressor per AU, 001's SVR, on
  standardised parameters) is fitted to the *real* pairs of the training identities; it then
  reads the AUs of (a) the real parameters of the test identities' pain expressions (001's
  "Real" row: the reader's own error) and (b) the rig's parameters generated for the same AU
  vectors (CAAE from each test identity's face at rest, as 001 starts from neutral faces).
  MAE and MSE per AU against the requested levels.
- **Bounds**: the share of raw (unclipped) outputs outside the observed bounds.
- **Diversity** for one fixed AU vector: the spread of ``diversity_samples`` outputs (CGAN:
  as many z; CAAE: as many source expressions of test identities), in standardised units and,
  on the built-in head, as per-vertex spread in mm.
- **Where each AU acts** (built-in head): each AU alone at full level, the mean motion (mm)
  over every AU's region, for the learned rig and for the procedural rig it learned from.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from faces.au import PSPI_AUS
from pipelines import storage

if TYPE_CHECKING:
    from actors.learned_rig import LearnedRig
    from train.rig import Pairs

DIVERSITY_AUS = {"AU4": 3.0, "AU6": 3.0, "AU9": 2.0, "AU43": 1.0}  # PSPI 9


def au_reader(train: "Pairs"):
    """SVRs from standardised parameters to AU levels, on the non-neutral training pairs."""
    from sklearn.multioutput import MultiOutputRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    pain = train.aus.any(1)
    return make_pipeline(StandardScaler(), MultiOutputRegressor(SVR(C=10.0))).fit(
        train.params[pain], train.aus[pain])


def au_errors(reader, params: np.ndarray, aus: np.ndarray) -> dict:
    err = reader.predict(params) - aus
    mae, mse = np.abs(err).mean(0), (err ** 2).mean(0)
    return {"mae": dict(zip(PSPI_AUS, mae.tolist())), "mse": dict(zip(PSPI_AUS, mse.tolist())),
            "mae_mean": float(mae.mean()), "mse_mean": float(mse.mean())}


def _rest(p: "Pairs") -> dict[int, np.ndarray]:
    """Each identity's parameters at rest (its expression with no AU)."""
    out = {}
    for i, a, x in zip(p.identity, p.aus, p.params):
        if not a.any():
            out.setdefault(int(i), x)
    return out


def generate_for(rig: "LearnedRig", test: "Pairs", seed) -> tuple[np.ndarray, np.ndarray]:
    """(raw outputs, clipped outputs) for the test pain expressions' AU vectors."""
    pain = test.aus.any(1)
    rest, default = _rest(test), test.neutral()
    src = np.stack([rest.get(int(i), default) for i in test.identity[pain]])
    raw = rig.generate(test.aus[pain], source=src, seed=seed, clip=False)
    return raw, np.clip(raw, rig.lower, rig.upper)


def diversity(rig: "LearnedRig", test: "Pairs", n: int, seed, model=None) -> dict:
    rng = np.random.default_rng(seed)
    aus = np.tile([DIVERSITY_AUS.get(a, 0.0) for a in PSPI_AUS], (n, 1)).astype(np.float32)
    src = test.params[rng.integers(0, len(test.params), n)]
    out = rig.generate(aus, source=src, seed=seed)
    d = np.linalg.norm(out[:, None] - out[None], axis=-1)
    res = {"aus": DIVERSITY_AUS, "samples": n,
           "param_std": float(np.mean(out.std(0) / rig.std)),
           "pairwise_l2": float(d[np.triu_indices(n, 1)].mean())}
    if model is not None and model.name == "builtin":
        shape = np.zeros(model.n_shape, np.float32)
        verts = np.stack([model.posed_params(shape, p) for p in out]).astype(np.float64)
        res["vertex_std_mm"] = float(np.linalg.norm(verts.std(0), axis=1).mean() * 1000)
    return res


def region_matrices(rig: "LearnedRig", model, seed, draws: int = 8) -> dict:
    """{learned, procedural}: rows = the AU at full level, columns = the region, mm."""
    from faces.rig import region_motion

    shape = np.zeros(model.n_shape, np.float32)
    neutral = model.neutral(shape)
    rest = model.expression_params({})
    out = {"learned": [], "procedural": []}
    for k, au in enumerate(PSPI_AUS):
        y = np.zeros((draws, len(PSPI_AUS)), np.float32)
        y[:, k] = rig.spec.scale()[k]
        gen = rig.generate(y, source=np.tile(rest, (draws, 1)), seed=[*np.atleast_1d(seed), k])
        moves = [region_motion(neutral, model.posed_params(shape, p)) for p in gen]
        out["learned"].append([float(np.mean([m[a] for m in moves])) for a in PSPI_AUS])
        true = region_motion(neutral, model.posed(shape, {au: float(y[0, k])}))
        out["procedural"].append([true[a] for a in PSPI_AUS])
    return out


def evaluate_rig(rig: "LearnedRig", pairs: dict, cfg, loc=None, name: str | None = None) -> dict:
    """The whole evaluation on ``pairs["test"]``; written into the run folder when given."""
    from faces.models import make_face_model

    test, seed = pairs["test"], [cfg.seed, 17]
    reader = au_reader(pairs["train"])
    pain = test.aus.any(1)
    raw, gen = generate_for(rig, test, seed)
    model = make_face_model(cfg.face) if cfg.face.model == rig.spec.face_model else None
    report = {"model": rig.spec.model, "face_model": rig.spec.face_model,
              "test_expressions": int(pain.sum()),
              "real": au_errors(reader, test.params[pain], test.aus[pain]),
              "generated": au_errors(reader, gen, test.aus[pain]),
              "out_of_bounds": float(((raw < rig.lower - 1e-6) | (raw > rig.upper + 1e-6)).mean()),
              "diversity": diversity(rig, test, cfg.train.rig.diversity_samples, seed, model)}
    if model is not None and model.name == "builtin":
        report["regions"] = region_matrices(rig, model, seed)
    if loc is not None:
        storage.write_json(loc, f"{name}/rig_eval.json", report)
        storage.write_bytes(loc, f"{name}/rig_eval.md", markdown(report).encode())
        if "regions" in report:
            storage.write_bytes(loc, f"{name}/rig_regions.png", regions_png(report["regions"]))
    return report


def markdown(r: dict) -> str:
    head = "| reader on | " + " | ".join(PSPI_AUS) + " | mean |\n|---|" + "---|" * 7 + "\n"
    lines = [f"# Learned rig ({r['model'].upper()}, {r['face_model']} parameters)", "",
             f"AU read-back on {r['test_expressions']} pain expressions of the test identities "
             "(SVR reader fitted on the training identities' real parameters).", ""]
    for metric in ("mae", "mse"):
        lines += [f"**{metric.upper()}**", "", head.rstrip("\n")]
        for row, label in (("real", "real parameters"), ("generated", "generated")):
            e = r[row]
            lines.append(f"| {label} | " + " | ".join(f"{e[metric][a]:.3f}" for a in PSPI_AUS)
                         + f" | {e[metric + '_mean']:.3f} |")
        lines.append("")
    d = r["diversity"]
    lines += [f"Raw outputs outside the observed bounds: {r['out_of_bounds']:.2%} (clipped in "
              "use).", "",
              f"Diversity for {d['aus']} over {d['samples']} draws: parameter std "
              f"{d['param_std']:.3f} (in training stds), mean pairwise L2 {d['pairwise_l2']:.3f}"
              + (f", per-vertex spread {d['vertex_std_mm']:.2f} mm" if "vertex_std_mm" in d
                 else "") + "."]
    if "regions" in r:
        lines += ["", "Mean motion (mm) over each AU's region, each AU alone at full level "
                  "(learned / procedural rig):", "", head.replace("reader on", "AU at full")
                  .replace(" mean |", "").replace("---|" * 7, "---|" * 6).rstrip("\n")]
        for k, au in enumerate(PSPI_AUS):
            lines.append(f"| {au} | " + " | ".join(
                f"{a:.2f} / {b:.2f}" for a, b in zip(r["regions"]["learned"][k],
                                                     r["regions"]["procedural"][k])) + " |")
    return "\n".join(lines) + "\n"


def regions_png(regions: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    vmax = max(np.max(regions["learned"]), np.max(regions["procedural"]))
    for ax, key in zip(axes, ("learned", "procedural")):
        m = np.asarray(regions[key])
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=vmax)
        ax.set_xticks(range(6), [f"{a}\nregion" for a in PSPI_AUS], fontsize=8)
        ax.set_yticks(range(6), [f"{a} = max" for a in PSPI_AUS], fontsize=8)
        ax.set_title(f"{key} rig: mean motion (mm)")
        for i in range(6):
            for j in range(6):
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] < 0.6 * vmax else "black")
    fig.colorbar(im, ax=axes, shrink=0.8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
