"""Renderer throughput as the pipeline uses it, against a bare moderngl pass and depth-only
rendering in the same run; then the image codecs on the frames it rendered.

    python benchmarks/render.py [--sizes 256] [--threads 1] [--expressions 11] [--json F]

The scene is a real identity of the local preset (head 16.5 k triangles, plus hair, lashes
and body), dressed, lit and textured as `pain3d generate` does; the expression changes every
three views (the views of one expression share their vertex upload, as in the pipeline).
- bare moderngl: the same triangles through a one-line shader, positions uploaded once per
  expression, one colour attachment read back: the floor of a draw on this GL.
- depth only; unlit three (heatmap colours, depth, mask: everything but the lit photo, i.e.
  the plumbing without material shading); rgb + mask; all four (rgb, heatmap in the
  vertex-colour output, depth, mask): `Renderer.render` calls.
- render_views: the render stage's own loop (photo + mask + heatmap + head box, lashes
  rebuilt per expression).
`--threads` is llvmpipe's thread count (the render stage gets its num_cpus, 1 on the laptop).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def scene(expressions: int):
    from actors.neutral_face import demographics_of
    from cluster.config import load_config
    from faces.heatmap import displacement, heat_colors
    from faces.photo import identity_setup
    from pipelines.inprocess import run_stages, stage_steps
    from pipelines.tasks import face_model

    cfg = load_config("local", ["generate.stages.qa.backend=none"])
    b = run_stages(stage_steps(cfg), 0, until="texturing")
    model = face_model(cfg.face)
    neutral = b["vertices"][0, 0]
    tex = b["texture"][0] if "texture" in b else None
    setup = identity_setup(model, 0, 0, demographics_of(b, 0), neutral, tex, cfg.render)
    verts = [b["vertices"][0, 1 + e % (b["vertices"].shape[1] - 1)].copy()
             for e in range(expressions)]  # fresh arrays: nothing cached between expressions
    heat = [heat_colors(displacement(neutral, v, model.template.faces), cfg.heatmap.mode,
                        cfg.heatmap.scale_m, cfg.heatmap.cmap) for v in verts]
    return cfg, model, setup, tex, verts, heat


def renderer_cases(r, cfg, model, setup, tex, verts, heat, size: int) -> dict[str, float]:
    from faces.dressing import extras
    from faces.hair import lash_mesh
    from faces.photo import render_views
    from faces.scene import camera_for, lighting_for

    rc = cfg.render
    rc_size = type(rc)(**{**rc.__dict__, "size": size})
    cams = [camera_for(rc, model.camera_target, y, setup.scene) for y in rc.yaws]
    lights = [lighting_for(rc, c, setup.scene) for c in cams]
    parts = [extras(setup.static, lash_mesh(v), setup.dressing, heat=True) for v in verts]
    cases = {"depth only": ("depth",), "unlit three": ("vcolor", "depth", "mask"),
             "rgb + mask": ("rgb", "mask"), "all four": ("rgb", "vcolor", "depth", "mask")}
    fps = {}
    for name, outs in cases.items():
        def frame(e, k):
            kw = {"vcolor": heat[e]} if "vcolor" in outs else {}
            r.render(model.mesh(verts[e]), cams[k], size, texture=tex, lighting=lights[k],
                     outputs=outs, materials=model.materials(), extras=parts[e], **kw)
        try:
            fps[name] = _rate(frame, len(verts), len(cams))
        except TypeError:  # a renderer from before `vcolor=` (comparing commits)
            fps[name] = float("nan")
    fps["render_views"] = _rate_views(lambda e: render_views(r, model, setup, verts[e], tex, None,
                                                             rc_size, heat[e]), len(verts),
                                      len(cams))
    return fps


def _rate(frame, n_expr: int, n_views: int) -> float:
    for k in range(n_views):  # warm-up: programs, framebuffers, the identity's buffers
        frame(0, k)
    t0 = time.perf_counter()
    for e in range(1, n_expr):
        for k in range(n_views):
            frame(e, k)
    return (n_expr - 1) * n_views / (time.perf_counter() - t0)


def _rate_views(call, n_expr: int, n_views: int) -> float:
    call(0)
    t0 = time.perf_counter()
    for e in range(1, n_expr):
        call(e)
    return (n_expr - 1) * n_views / (time.perf_counter() - t0)


def bare_moderngl(r, model, setup, verts, size: int, n_views: int = 3) -> float:
    """The same triangles, a one-line shader, one read-back: what a draw costs at least."""
    from faces.dressing import extras
    from faces.hair import lash_mesh
    from faces.render import Camera

    ctx = r.ctx
    prog = ctx.program(vertex_shader="#version 330\nuniform mat4 mvp; in vec3 in_pos;\n"
                       "void main() { gl_Position = mvp * vec4(in_pos, 1.0); }",
                       fragment_shader="#version 330\nout vec4 c;\nvoid main() { c = vec4(1.0); }")

    def merged(v):
        meshes = [model.mesh(v)] + [x.mesh for x in extras(setup.static, lash_mesh(v),
                                                            setup.dressing)]
        offs = np.cumsum([0] + [m.n_vertices for m in meshes])
        pos = np.concatenate([m.vertices for m in meshes]).astype("f4")
        idx = np.concatenate([m.faces + o for m, o in zip(meshes, offs)]).astype("u4")
        return pos, idx

    pos, idx = merged(verts[0])
    vbo, ibo = ctx.buffer(reserve=pos.nbytes * 2), ctx.buffer(idx.tobytes())
    vao = ctx.vertex_array(prog, [(vbo, "3f", "in_pos")], index_buffer=ibo, index_element_size=4)
    fbo = ctx.framebuffer([ctx.renderbuffer((size, size), 4)], ctx.depth_renderbuffer((size, size)))
    out = bytearray(size * size * 4)
    cams = [Camera(yaw_deg=y, target=model.camera_target) for y in (-30.0, 0.0, 30.0)][:n_views]
    mvps = [(c.projection() @ c.view()).T.astype("f4").tobytes() for c in cams]
    ctx.enable(ctx.DEPTH_TEST)

    def frame(e, k):
        if k == 0:
            vbo.write(merged(verts[e])[0].tobytes())
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        prog["mvp"].write(mvps[k])
        vao.render()
        fbo.read_into(out, components=4)

    fps = _rate(frame, len(verts), len(cams))
    for o in (vao, vbo, ibo, fbo, prog):
        o.release()
    return fps


def codec_table(r, cfg, model, setup, tex, verts, heat) -> list[dict]:
    """Encode (and decode) the frames of render_views with each codec: ms and KiB per frame
    (image + heatmap + mask), and whether the round trip is exact."""
    import io

    from PIL import Image

    from faces.photo import render_views
    from pipelines.tasks import encode_image

    frames = [o for e in range(min(4, len(verts)))
              for o in render_views(r, model, setup, verts[e], tex, None,
                                    cfg.render, heat[e])]
    rows = []
    for codec, level in (("png", 1), ("png", 6), ("webp", 1)):
        arrays = [a for o in frames for a in (o["rgb"], o["heatmap"],
                                              o["mask"].astype(np.uint8) * 255)]
        t0 = time.perf_counter()
        blobs = [encode_image(a, codec, level) for a in arrays]
        enc = (time.perf_counter() - t0) / len(frames)
        t0 = time.perf_counter()
        back = [np.asarray(Image.open(io.BytesIO(b))) for b in blobs]
        dec = (time.perf_counter() - t0) / len(frames)
        exact = all(np.array_equal(d if d.ndim == a.ndim else d[..., 0], a)
                    for d, a in zip(back, arrays))
        rows.append({"codec": codec if codec == "webp" else f"png level {level}",
                     "encode_ms": enc * 1e3, "decode_ms": dec * 1e3,
                     "kib_per_frame": sum(map(len, blobs)) / len(frames) / 1024, "exact": exact})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--threads", type=int, default=1, help="llvmpipe threads (LP_NUM_THREADS)")
    ap.add_argument("--expressions", type=int, default=11, help="expressions (x 3 views) timed")
    ap.add_argument("--gpu", action="store_true", help="render on the EGL device of the first "
                    "GPU in CUDA_VISIBLE_DEVICES (matched by PCI address)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    os.environ["LP_NUM_THREADS"] = str(args.threads)  # read when the context is made
    from faces.egl import egl_device_for_cuda, egl_devices
    from faces.render import get_renderer

    device = None
    if args.gpu:
        device = egl_device_for_cuda()
        print(f"EGL devices: {[(d.index, d.drm_file, d.pci) for d in egl_devices()]}; "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')} -> EGL device "
              f"{device}")
    r = get_renderer(device)
    cfg, model, setup, tex, verts, heat = scene(args.expressions + 1)
    print(f"GL renderer: {r.gl_renderer}; llvmpipe threads {args.threads}; "
          f"{args.expressions} expressions x 3 views per figure")
    results = []
    for size in args.sizes:
        fps = {"bare moderngl": bare_moderngl(r, model, setup, verts, size)}
        fps.update(renderer_cases(r, cfg, model, setup, tex, verts, heat, size))
        print(f"\n{size}x{size}\n  {'case':<16}{'frames/s':>10}{'vs bare':>10}{'vs depth':>10}")
        for name, v in fps.items():
            print(f"  {name:<16}{v:>10.1f}{v / fps['bare moderngl']:>10.2f}"
                  f"{v / fps['depth only']:>10.2f}")
            results.append({"size": size, "case": name, "fps": round(v, 2)})
    codecs = codec_table(r, cfg, model, setup, tex, verts, heat)
    print(f"\ncodecs, per frame (image + heatmap + mask, {cfg.render.size} px)\n"
          f"  {'codec':<14}{'encode ms':>10}{'decode ms':>10}{'KiB':>8}{'exact':>7}")
    for c in codecs:
        print(f"  {c['codec']:<14}{c['encode_ms']:>10.2f}{c['decode_ms']:>10.2f}"
              f"{c['kib_per_frame']:>8.1f}{str(c['exact']):>7}")
    if args.json:
        Path(args.json).write_text(json.dumps({"gl_renderer": r.gl_renderer, "threads":
                                               args.threads, "results": results,
                                               "codecs": codecs}, indent=1))


if __name__ == "__main__":
    main()
