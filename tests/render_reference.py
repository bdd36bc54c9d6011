"""Reference frames of the renderer, for tests/test_render_reference.py.

    python tests/render_reference.py [--check]

Renders identity 3 of the local preset at 128 pixels through the pipeline's own stages
(rigging, neutral face, texturing, then faces.photo.render_views): the neutral and two pain
expressions x three views (rgb, mask, heatmap, head box), plus every output of one view
through Renderer.render (depth, vertex colour). Written once, with the renderer of commit
ef1a53a, to tests/data/render_reference.npz; the test renders the same frames again and
compares. Mesa's llvmpipe is deterministic, so a faster renderer must match it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REFERENCE = Path(__file__).parent / "data" / "render_reference.npz"
EXPRESSIONS = (0, 4, 9)


def render_reference() -> dict[str, np.ndarray]:
    from cluster.config import load_config
    from faces.heatmap import displacement, heat_colors
    from faces.photo import identity_setup, render_views
    from faces.render import Camera, get_renderer
    from actors.neutral_face import demographics_of
    from pipelines.inprocess import run_stages, stage_steps
    from pipelines.tasks import face_model

    cfg = load_config("local", ["render.size=128", "generate.stages.qa.backend=none"])
    b = run_stages(stage_steps(cfg), 3, until="texturing")
    model, r, rc = face_model(cfg.face), get_renderer(num_threads=1), cfg.render
    tex = b["texture"][0] if "texture" in b else None
    neutral = b["vertices"][0, 0]
    setup = identity_setup(model, int(b["seed"][0]), 3, demographics_of(b, 0), neutral, tex, rc)
    out: dict[str, list] = {k: [] for k in ("rgb", "mask", "heatmap", "head_box")}
    for e in EXPRESSIONS:
        verts = b["vertices"][0, e]
        hc = None if e == 0 else heat_colors(displacement(neutral, verts, model.template.faces),
                                             cfg.heatmap.mode, cfg.heatmap.scale_m,
                                             cfg.heatmap.cmap)
        for o in render_views(r, model, setup, verts, tex, None, rc, hc):
            out["rgb"].append(o["rgb"])
            out["mask"].append(o["mask"])
            out["heatmap"].append(o.get("heatmap", np.zeros_like(o["rgb"])))
            out["head_box"].append(np.asarray(o["head_box"]))
    verts = b["vertices"][0, EXPRESSIONS[-1]]
    colors = (np.arange(model.template.n_vertices)[:, None] * [7, 13, 29] % 256).astype(np.uint8)
    cam = Camera(yaw_deg=20.0, target=model.camera_target)
    four = r.render(model.mesh(verts), cam, 128, texture=tex, vertex_colors=colors,
                    materials=model.materials())
    res = {k: np.stack(v) for k, v in out.items()}
    res["gl_renderer"] = np.array(r.gl_renderer)
    res.update({f"four_{k}": v for k, v in four.items()})
    return res


def main() -> None:
    res = render_reference()
    if "--check" in sys.argv:
        ref = np.load(REFERENCE)
        for k in [f for f in ref.files if f != "gl_renderer"]:
            a, b = ref[k].astype(np.float64), res[k].astype(np.float64)
            print(f"{k:<14} max |diff| {np.abs(a - b).max():.6g}  differing "
                  f"{np.mean(np.any(a != b, axis=-1) if a.ndim == 5 else a != b):.5f}")
        return
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **res)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
