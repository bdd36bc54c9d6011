"""Measures pipelines/align.py's TEMPLATE: where the eye centres, the nose tip and the mouth
corners lie in the training crop of frontal generated frames, read by MediaPipe's face
landmarker (the QA stage's model), so that real faces are aligned to the same framing.

    .venv/bin/python docs/align_template.py --data data/pain3d-24
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))



def main() -> None:
    import numpy as np
    from PIL import Image

    from actors.qa import FaceReader, model_path
    from pipelines.align import MP_POINTS, TEMPLATE
    from pipelines.layout3dpain import load_frames_columns
    from train.crop import box_from_head, crop_resize

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    t = load_frames_columns(args.data, ["image", "head_box", "yaw_deg"]).to_pylist()
    reader, found = FaceReader(model_path(None)), []
    for r in t:
        if r["yaw_deg"] != 0 or r["head_box"] is None:
            continue
        im = Image.open(io.BytesIO(r["image"])).convert("RGB")
        face = np.asarray(crop_resize(im, box_from_head(r["head_box"], im.size[::-1]), args.size))
        reading = reader.read(face)
        if reading is not None:
            found.append([reading.landmarks[ix].mean(0) / args.size for ix in MP_POINTS.values()])
    pts = np.asarray(found)
    print(f"{len(pts)} frontal frames read")
    for name, m, s, tmpl in zip(MP_POINTS, pts.mean(0), pts.std(0), TEMPLATE):
        print(f"{name:>20}: x {m[0]:.3f} ± {s[0]:.3f}, y {m[1]:.3f} ± {s[1]:.3f}   "
              f"(TEMPLATE {tmpl[0]:.3f}, {tmpl[1]:.3f})")
    sym = pts.mean(0)
    sym[:, 0] = (sym[:, 0] + 1 - sym[[1, 0, 2, 4, 3], 0]) / 2  # mirror-symmetric
    print("symmetric template:", np.round(sym, 3).tolist())
    reader.close()


if __name__ == "__main__":
    main()
