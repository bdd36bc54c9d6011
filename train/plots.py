"""Training figures as PNG files (matplotlib, no torch): shared by ``pain3d evaluate`` and the
HTML report, so a report can redraw them from the JSON a run left behind."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(y, pred, classes: int = 17) -> list[list[int]]:
    """Counts [true][predicted] over PSPI 0..classes-1 (rows and columns always all there)."""
    from sklearn.metrics import confusion_matrix as cm

    return cm(y, pred, labels=list(range(classes))).tolist()


def confusion_png(cm: list[list[int]], path: Path, title: str = "Confusion matrix") -> None:
    plt = _pyplot()
    cm = np.asarray(cm)
    n = len(cm)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xlabel("predicted PSPI")
    ax.set_ylabel("true PSPI")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def curves_png(history: list[dict], path: Path) -> None:
    plt = _pyplot()
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    ax[0].plot(ep, [h["train_loss"] for h in history], marker="o")
    ax[0].set_title("training loss")
    for k in ("val_macro_auroc", "val_acc", "val_acc_pm1", "val_acc_pm2"):
        ax[1].plot(ep, [h.get(k, np.nan) for h in history], marker="o", label=k[4:])
    ax[1].set_title("validation")
    ax[1].legend(frameon=False, loc="lower right")
    from matplotlib.ticker import MaxNLocator

    for a in ax:
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, counted from 1
        a.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
