"""Evaluate a checkpoint on a split: metrics JSON + markdown (overall and per demographic
group with gaps), confusion matrix and training curves as PNGs. Runs in one process."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import guard
from train import plots
from train.data import decode_batch
from train.loop import fusion_parts, load_model, predict, scores
from train.heads import PSPI_MAX
from train.metrics import (AU_NAMES, GROUPS, softmax, calibrate_thresholds, compute_metrics,
                           group_metrics, pain_only_metrics, pain_scores, regression_class)

# The paper's Table 2 (3DPain, 16/17-class PSPI), for comparison in reports
PAPER_TABLE2 = {
    "baseline": {"macro_auroc": 0.81, "acc": 0.24, "acc_pm1": 0.60, "acc_pm2": 0.79},
    "au_queries": {"macro_auroc": 0.82, "acc": 0.24, "acc_pm1": 0.61, "acc_pm2": 0.81},
    "au_queries_distill": {"macro_auroc": 0.85, "acc": 0.25, "acc_pm1": 0.63, "acc_pm2": 0.83},
    "teacher": {"macro_auroc": 0.96, "acc": 0.67, "acc_pm1": 0.96, "acc_pm2": 0.99},
}


def _batches(data: str, ids: list[int], cfg, batch: int = 64, shots: int = 1):
    """Decoded batches of ``ids``' frames as the model ``cfg`` (size, crop) was trained on;
    a neutral-reference model's with ``shots`` references per frame."""
    from functools import partial

    from pipelines.layout3dpain import iter_frames
    from train import neutral

    decode = partial(decode_batch, size=cfg.img_size, keep_groups=True, crop=cfg.face_crop)
    if cfg.neutral_reference:
        batches = (b for _, t in neutral.identity_tables(data, ids)
                   for b in neutral.shot_batches(t, decode, shots, batch))
    else:
        batches = (decode(rb.to_pydict()) for rb in iter_frames(data, ids, batch))
    for b in batches:
        yield {k: (torch.from_numpy(v) if v.dtype != object else v) for k, v in b.items()}


def evaluate(checkpoint: str, data: str, mode: str, split: dict, which: str = "test",
             out: str | None = None, history: list[dict] | None = None,
             shots: int = 1, calibrate_on: str = "train", keep: bool = False) -> dict:
    """Scores ``split[which]`` on all frames (17 classes) and on pain frames only (PSPI
    1-16, the paper's Table 2 setting); F1 thresholds calibrated on ``split[calibrate_on]``
    (the training split, as the authors do; cross-validation uses the validation subjects,
    which the model has not fit). ``keep``: the per-frame identities, labels and class
    probabilities come back under ``"frames_scored"`` (for bootstrap intervals; not JSON).
    ``shots``: a neutral-reference model's answers averaged over that many references of
    each frame's identity (``train.eval.neutral_shots``)."""
    if which not in split:
        raise ValueError(f"no {which!r} split here; have {sorted(split)}")
    ids = split[which]
    if not ids:
        raise ValueError(f"the {which} split is empty")
    model = load_model(checkpoint)
    cpu = torch.device("cpu")
    shots = shots if model.cfg.neutral_reference else 1
    p = predict(model, _batches(data, ids, model.cfg, shots=shots), mode, cpu)
    thresholds, source = {}, "none: F1 at 0.5 only (no training split recorded)"
    if split.get(calibrate_on) and which != "all":
        t = predict(model, _batches(data, split[calibrate_on], model.cfg, shots=shots), mode,
                    cpu)
        thresholds = calibrate_thresholds(t.get("logits"), t["y"], t.get("binary"))
        source = {"train": "the training split", "val": "the validation split"}.get(
            calibrate_on, f"the {calibrate_on} split")
    metrics = compute_metrics(y=p["y"], au_pred=p["au"], au_true=p["au_true"],
                              thresholds=thresholds, **scores(p))
    groups = group_metrics(y=p["y"], groups={g: p[g] for g in GROUPS if g in p},
                           au_pred=p["au"], au_true=p["au_true"], **scores(p))
    report = {"checkpoint": checkpoint, "data": data, "mode": mode, "split": which,
              "frames": int(len(p["y"])), "metrics": metrics, "neutral_shots": shots,
              "pain_only": pain_only_metrics(p.get("logits"), p["y"], p.get("reg")),
              "thresholds": {f"pspi_ge{k}": v for k, v in thresholds.items()},
              "thresholds_from": source, "groups": groups,
              "confusion": plots.confusion_matrix(p["y"], _predicted_class(p), PSPI_MAX + 1)}
    if model.cfg.late_fusion:  # the fused answer's parts, each alone (all frames)
        report["fusion_parts"] = fusion_parts(p)
    if out:
        write_evaluation(out, report, predictions_table(p, thresholds), history,
                         [checkpoint, data])
    if keep and "logits" in p:
        report["frames_scored"] = {"identity": np.asarray(p["identity"], np.int64),
                                   "y": np.asarray(p["y"], np.int64),
                                   "probs": softmax(np.asarray(p["logits"], np.float64))}
    return report


def write_evaluation(out: str, report: dict, predictions: pa.Table, history, inputs) -> None:
    """The evaluation folder, whole or not at all; an earlier one is replaced only when it is
    an evaluation pain3d wrote, unchanged."""
    with guard.whole_folder(out, "evaluation", inputs) as folder:
        (folder / "metrics.json").write_text(json.dumps(report, indent=1))
        (folder / "metrics.md").write_text(_markdown(report))
        pq.write_table(predictions, folder / "predictions.parquet")
        plots.confusion_png(report["confusion"], folder / "confusion.png")
        if history:
            plots.curves_png(history, folder / "curves.png")


def predictions_table(p: dict, thresholds: dict[int, float]) -> pa.Table:
    """One row per scored frame: which frame, its true PSPI and AUs, the model's AUs, class
    probabilities, expected PSPI, P(PSPI >= k) and the decision at the calibrated threshold
    (0.5 where none was calibrated)."""
    n = len(p["y"])
    cols = {"sample_id": p.get("sample_id", np.full(n, None)),
            "identity": p.get("identity", np.full(n, -1)), "view": p.get("view", np.full(n, -1)),
            "pspi": np.asarray(p["y"], np.int64)}
    for j, a in enumerate(AU_NAMES):
        cols[a] = np.asarray(p["au_true"][:, j], np.float32)
        cols[f"{a}_pred"] = np.asarray(p["au"][:, j], np.float32)
    if "logits" in p:
        probs = softmax(np.asarray(p["logits"], np.float64))
        cols["class_probs"] = list(probs.astype(np.float32))
        cols["pspi_expected"] = probs @ np.arange(probs.shape[1])
    else:
        cols["pspi_expected"] = np.asarray(p["reg"], np.float64) * PSPI_MAX
    for k, score in pain_scores(p.get("logits"), p.get("binary")).items():
        cols[f"p_pspi_ge{k}"] = score
        cols[f"pain_pspi_ge{k}"] = score >= thresholds.get(k, 0.5)
    return pa.table({k: pa.array(list(v) if k == "class_probs" else v) for k, v in cols.items()})


def _predicted_class(p: dict) -> np.ndarray:
    if "logits" in p:
        return p["logits"].argmax(1)
    return regression_class(p["reg"] * PSPI_MAX)  # a regression-only model


def _markdown(r: dict) -> str:
    m = r["metrics"]
    po = r["pain_only"]
    lines = [f"# Evaluation: {r['mode']} on the {r['split']} split ({r['frames']} frames)", "",
             f"checkpoint `{r['checkpoint']}`; F1 thresholds from {r['thresholds_from']}"
             + (f"; answers averaged over {r['neutral_shots']} neutral references per frame"
                if r.get("neutral_shots", 1) > 1 else ""), "",
             "## All frames (PSPI 0-16, 17 classes)", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in m.items()]
    lines += ["", f"## Pain frames only (PSPI 1-16, 16 classes; {po.get('frames', 0)} frames; "
              "the paper's Table 2 setting)", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in po.items() if k != "frames"]
    for part, pm in r.get("fusion_parts", {}).items():
        lines += ["", f"## Late fusion: the {part.upper()} classifier alone (all frames)", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in pm.items()]
    for attr, per in r["groups"].items():
        keys = ("macro_auroc", "acc", "acc_pm1", "mae_argmax")
        lines += ["", f"## By {attr}", "", "| group | " + " | ".join(keys) + " |",
                  "|---" * (len(keys) + 1) + "|"]
        for g, gm in per.items():
            lines.append(f"| {g} | " + " | ".join(f"{gm.get(k, float('nan')):.3f}" for k in keys)
                         + " |")
    return "\n".join(lines) + "\n"
