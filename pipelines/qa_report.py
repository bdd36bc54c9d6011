"""The AU read-back's figures for manifest.json and the dataset card: face detection rate
per view, QA pass rate, and per AU the Spearman rho between requested and measured
intensity (pain frames whose face and neutral were both found)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from actors.qa import QA_COLUMNS
from faces.au import PSPI_AUS
from faces.au_measure import AU_MEASURES

QA_READ_COLUMNS = ["view", "yaw_deg", "expression", *PSPI_AUS, "qa_face_found", *QA_COLUMNS,
                   "qa_pass"]


def _arrays(t: pa.Table) -> dict[str, np.ndarray] | None:
    if "qa_face_found" not in t.column_names or t.column("qa_face_found").null_count == len(t):
        return None  # the qa stage did not run
    out = {c: t.column(c).to_numpy(zero_copy_only=False) for c in
           ("view", "yaw_deg", "expression", *PSPI_AUS)}
    out["found"] = np.asarray(t.column("qa_face_found").fill_null(False), bool)
    out["pass"] = np.asarray(t.column("qa_pass").fill_null(False), bool)
    for au in PSPI_AUS:
        out[f"qa_{au}"] = np.asarray(t.column(f"qa_{au}").to_numpy(zero_copy_only=False),
                                     np.float64)
    return out


def _rho(req: np.ndarray, got: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    ok = np.isfinite(got)
    n = int(ok.sum())
    if n < 3 or np.ptp(req[ok]) == 0 or np.ptp(got[ok]) == 0:
        return {"rho": None, "frames": n}
    return {"rho": round(float(spearmanr(req[ok], got[ok]).statistic), 4), "frames": n}


def qa_summary(t: pa.Table) -> dict | None:
    """Figures of a frames table with QA columns (None when QA did not run)."""
    a = _arrays(t)
    if a is None:
        return None
    views = {}
    for v in np.unique(a["view"]):
        m = a["view"] == v
        views[str(int(v))] = {"yaw_deg": float(a["yaw_deg"][m][0]), "frames": int(m.sum()),
                              "face_found": round(float(a["found"][m].mean()), 4),
                              "qa_pass": round(float(a["pass"][m].mean()), 4)}
    pain = a["expression"] > 0
    rho = {}
    for au in PSPI_AUS:
        rho[au] = {"measure": AU_MEASURES[au], **_rho(a[au][pain], a[f"qa_{au}"][pain])}
        rho[au]["per_view"] = {k: _rho(a[au][pain & (a["view"] == int(k))],
                                       a[f"qa_{au}"][pain & (a["view"] == int(k))])["rho"]
                               for k in views}
    from actors.qa import blendshape_names

    return {"frames": int(len(a["found"])), "face_found": round(float(a["found"].mean()), 4),
            "qa_pass": round(float(a["pass"].mean()), 4),
            "failed_frames": int((~a["pass"]).sum()), "per_view": views, "spearman": rho,
            "blendshape_names": blendshape_names()}


def qa_png(t: pa.Table, path: Path) -> None:
    """Measured against requested intensity, per AU (pain frames, every view)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = _arrays(t)
    fig, axes = plt.subplots(1, len(PSPI_AUS), figsize=(15, 3.2), dpi=110)
    pain = a["expression"] > 0
    for ax, au in zip(axes, PSPI_AUS):
        levels = (0, 1) if au == "AU43" else range(6)
        data = [a[f"qa_{au}"][pain & (a[au] == k)] * 100 for k in levels]
        data = [d[np.isfinite(d)] for d in data]
        ax.boxplot(data, positions=list(levels), widths=0.6, showfliers=False)
        ax.set_title(f"{au}: {AU_MEASURES[au]}", fontsize=9)
        ax.set_xlabel("requested intensity")
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("measured, % of eye-corner distance")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def card_lines(s: dict) -> list[str]:
    lines = ["## AU read-back (qa stage: MediaPipe face landmarker)", "",
             f"Face found in {s['face_found']:.1%} of {s['frames']} frames; "
             f"{s['qa_pass']:.1%} pass QA ({s['failed_frames']} fail).", "",
             "| view | yaw | frames | face found | QA pass |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['yaw_deg']:g} | {v['frames']} | {v['face_found']:.1%} | "
              f"{v['qa_pass']:.1%} |" for k, v in s["per_view"].items()]
    lines += ["", "Spearman rho between requested and measured intensity (pain frames):", "",
              "| AU | measured as | rho | frames |", "|---|---|---|---|"]
    for au, r in s["spearman"].items():
        rho = "n/a" if r["rho"] is None else f"{r['rho']:.2f}"
        lines.append(f"| {au} | {r['measure']} | {rho} | {r['frames']} |")
    return lines + ["", "![AU read-back](qa.png)", ""]
