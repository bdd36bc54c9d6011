"""`pain3d import 3dpain` throughput on a synthetic release in the authors' layout: unpacked
folders against Hugging Face-style `.tar.gz` bundles of the same files.

    python benchmarks/release_import.py [--subjects 40] [--size 256] [--json F]

Each subject has 2 neutral and 10 pain expressions x 2 views (22 frames: jpg view 000, png
view 001), one annotation and one heatmap per pain expression, as the authors name them
(tests/test_release3dpain.py builds the same tree in small). Bundles hold 500 files each.
A one-subject import first starts Ray, so neither timed import pays for that.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def files(subjects: int, size: int) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    out = {}

    def img(fmt):
        a = (rng.random((size, size, 3)) * 40 + 100).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        return buf.getvalue()

    for n in range(subjects):
        s = f"flame_sample_{n:04d}"
        for v, fmt in (("textured_view_000_inpainted.jpg", "JPEG"), ("view_001.png", "PNG")):
            out[f"meshes_inpainted/{s}_neutral_{v}"] = img(fmt)
            for e in range(1, 11):
                out[f"meshes_inpainted/{s}_pain_{e}_{v}"] = img(fmt)
        for e in range(1, 11):
            out[f"annotations/{s}_pain_{e}_annotations.json"] = json.dumps(
                {"AU4": e % 6, "AU6": 1, "AU7": 0, "AU9": 0, "AU10": 1, "AU43": 0,
                 "PSPI": e % 6 + 2}).encode()
            out[f"heatmaps/{s}_pain_{e}_heatmap.png"] = img("PNG")
    return out


def timed_import(root: Path, out: Path) -> float:
    from cluster.cli import main

    t = time.perf_counter()
    assert main(["import", "3dpain", str(root), "--out", str(out)]) == 0
    return time.perf_counter() - t


def main() -> None:
    from tests.test_release3dpain import pack_like_hugging_face, write_tree

    p = argparse.ArgumentParser()
    p.add_argument("--subjects", type=int, default=40)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json")
    a = p.parse_args()
    f = files(a.subjects, a.size)
    frames = a.subjects * 22
    work = Path(tempfile.mkdtemp(prefix="pain3d-release-bench-"))
    try:
        plain = write_tree(work / "plain", f)
        bundled = pack_like_hugging_face(work / "bundled", f, per_bundle=500)
        mb = sum(len(v) for v in f.values()) / 2 ** 20
        res = {"subjects": a.subjects, "frames": frames, "size": a.size, "megabytes": mb}
        warm = write_tree(work / "warm", {k: v for k, v in f.items() if "_0000_" in k})
        res["first_import_with_ray_start_s"] = timed_import(warm, work / "out-warm")
        for name, root in (("unpacked", plain), ("bundled", bundled)):
            s = timed_import(root, work / f"out-{name}")
            res[name] = {"seconds": s, "frames_per_s": frames / s}
        print(json.dumps(res, indent=2))
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
