"""Renderer throughput: frames/s for each output type at 256 and 512 pixels, each as a ratio
to depth-only rendering measured in the same run.

    python benchmarks/render.py [--frames 60] [--json out.json]

Every frame is a full ``Renderer.render`` call (vertex upload, normals, draw, read-back) of a
textured built-in identity, cycling through the three default views.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faces.identity import make_appearance, make_identity  # noqa: E402
from faces.models import FaceConfig, make_face_model  # noqa: E402
from faces.render import DEFAULT_YAWS, Camera, get_renderer  # noqa: E402

CASES = {"depth": ("depth",), "mask": ("mask",), "vcolor": ("vcolor",), "rgb": ("rgb",),
         "all four": ("rgb", "vcolor", "depth", "mask")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    model = make_face_model(FaceConfig(texture_size=1024))
    spec = make_identity(0, 0, model)
    app = make_appearance(spec, model)
    mesh = model.mesh(model.neutral(spec.shape))
    colors = (app.texture.reshape(-1, 3)[: mesh.n_vertices] if app.texture is not None else None)
    r = get_renderer(num_threads=os.cpu_count())
    cams = [Camera(yaw_deg=y, target=model.camera_target) for y in DEFAULT_YAWS]
    print(f"GL renderer: {r.gl_renderer}; mesh: {mesh.n_vertices} vertices, "
          f"{len(mesh.faces)} triangles; {args.frames} frames per figure")
    results = []
    for size in args.sizes:
        fps = {}
        for name, outs in CASES.items():
            kw = dict(texture=app.texture, vertex_colors=colors, outputs=outs)
            for c in cams:  # warm-up: compile programs, allocate framebuffers
                r.render(mesh, c, size, **kw)
            t0 = time.perf_counter()
            for i in range(args.frames):
                r.render(mesh, cams[i % len(cams)], size, **kw)
            fps[name] = args.frames / (time.perf_counter() - t0)
        print(f"\n{size}x{size}")
        print(f"  {'output':<10}{'frames/s':>10}{'vs depth-only':>16}")
        for name, v in fps.items():
            print(f"  {name:<10}{v:>10.1f}{v / fps['depth']:>16.2f}")
            results.append({"size": size, "output": name, "fps": round(v, 2),
                            "ratio_to_depth": round(v / fps["depth"], 3)})
    if args.json:
        Path(args.json).write_text(json.dumps({"gl_renderer": r.gl_renderer,
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
