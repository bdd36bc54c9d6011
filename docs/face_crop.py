"""The picture of the face crop in the README: one pain expression of one identity at each
view, the frame with its face square drawn, and what the model sees (image and heatmap).

    .venv/bin/python docs/face_crop.py --data data/pain3d-120 --out docs/face_crop.png
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pyarrow.compute as pc
    from PIL import Image

    from pipelines.layout3dpain import load_frames
    from train.crop import crop_resize, face_box

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--identity", type=int, default=0)
    p.add_argument("--size", type=int, default=96, help="the model's input size")
    p.add_argument("--out", default="docs/face_crop.png")
    a = p.parse_args()
    try:
        t = load_frames(a.data)
    except FileNotFoundError as e:
        sys.exit(f"{e}; pass --data a generated dataset")
    t = t.filter(pc.equal(t.column("identity"), a.identity))  # one identity's rows only
    rows = [r for r in t.to_pylist() if r["heatmap"] is not None]
    if not rows:
        sys.exit(f"identity {a.identity} has no pain frames in {a.data}; pick another --identity")
    best = max(r["pspi"] for r in rows)
    rows = sorted((r for r in rows if r["pspi"] == best), key=lambda r: r["yaw_deg"])
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)))
    for ax_row, r in zip(np.atleast_2d(axes), rows):
        im, heat = (Image.open(io.BytesIO(r[c])).convert("RGB") for c in ("image", "heatmap"))
        box = face_box(np.asarray(Image.open(io.BytesIO(r["mask"])).convert("L")) > 0)
        ax_row[0].imshow(im)
        ax_row[0].add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1],
                                          fill=False, color="yellow", lw=2))
        ax_row[0].set_title(f"frame, yaw {r['yaw_deg']:+.0f}°, PSPI {r['pspi']}", fontsize=9)
        ax_row[1].imshow(crop_resize(im, box, a.size))
        ax_row[1].set_title(f"student input ({a.size} px)", fontsize=9)
        ax_row[2].imshow(crop_resize(heat, box, a.size))
        ax_row[2].set_title("teacher input (heatmap)", fontsize=9)
        for ax in ax_row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(a.out, dpi=90)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
