"""Headless OpenGL renderer (moderngl over EGL).

One pass fills four targets: UV-textured shaded RGB (per-material shading, faces/shaders.py),
per-vertex colour (unlit, used for heatmaps), metric depth and the foreground mask; extra
vertex-coloured parts (hair, lashes, body) are drawn in the same pass. Mesa's llvmpipe renders
on CPU-only machines; on GPU nodes NVIDIA's EGL is picked by device index. EGL falls back to
the CPU silently, so the GL renderer string is logged once per context.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from faces.draw import DrawCache
from faces.geometry import Mesh
from faces.scene import VaryConfig
from faces.shaders import BAKE_FRAG, BAKE_VERT, OUTPUTS, VERT, fragment_shader

log = logging.getLogger(__name__)

DEFAULT_YAWS = (-30.0, 0.0, 30.0)


@dataclass
class Camera:
    """Perspective camera orbiting the face's centre about the vertical axis.

    Positive yaw moves the camera towards the subject's left (+x), showing that cheek.
    """

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    distance: float = 0.88  # head and shoulders in a portrait frame
    fov_deg: float = 25.0
    target: tuple[float, float, float] = (0.0, -0.03, 0.03)
    near: float = 0.05
    far: float = 5.0
    roll_deg: float = 0.0  # about the viewing axis, + = counter-clockwise in the image

    def position(self) -> np.ndarray:
        y, p = np.deg2rad(self.yaw_deg), np.deg2rad(self.pitch_deg)
        d = np.array([np.sin(y) * np.cos(p), np.sin(p), np.cos(y) * np.cos(p)])
        return np.asarray(self.target) + self.distance * d

    def view(self) -> np.ndarray:
        eye, target = self.position(), np.asarray(self.target, np.float64)
        f = target - eye
        f /= np.linalg.norm(f)
        s = np.cross(f, [0.0, 1.0, 0.0])
        s /= np.linalg.norm(s)
        u = np.cross(s, f)
        if self.roll_deg:
            r = np.deg2rad(self.roll_deg)
            s, u = np.cos(r) * s - np.sin(r) * u, np.sin(r) * s + np.cos(r) * u
        m = np.eye(4)
        m[0, :3], m[1, :3], m[2, :3] = s, u, -f
        m[:3, 3] = -m[:3, :3] @ eye
        return m

    def projection(self, aspect: float = 1.0) -> np.ndarray:
        t = 1.0 / np.tan(np.deg2rad(self.fov_deg) / 2)
        n, f = self.near, self.far
        m = np.zeros((4, 4))
        m[0, 0], m[1, 1] = t / aspect, t
        m[2, 2], m[2, 3] = (f + n) / (n - f), 2 * f * n / (n - f)
        m[3, 2] = -1.0
        return m

    def project(self, points: np.ndarray, size: int) -> np.ndarray:
        """Pixel coordinates (x right, y down) of world points, for a square image."""
        p = np.c_[points, np.ones(len(points))] @ (self.projection() @ self.view()).T
        ndc = p[:, :2] / p[:, 3:4]
        return np.c_[(ndc[:, 0] + 1) * 0.5 * size, (1 - ndc[:, 1]) * 0.5 * size]


@dataclass
class Lighting:
    key_dir: tuple[float, float, float] = (-0.45, 0.55, 0.70)  # camera space, towards light
    fill_dir: tuple[float, float, float] = (0.0, 0.15, 1.0)  # soft, from the camera
    key: float = 0.85
    fill: float = 0.36
    ambient: float = 0.26
    key_color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # linear RGB


MATERIALS = {"skin": 0, "eye": 1, "hair": 2, "cloth": 3}


@dataclass
class Extra:
    """A vertex-coloured part drawn with the mesh in the same pass (hair, lashes, clothes)."""

    mesh: Mesh
    colors: np.ndarray  # (V, 3) uint8 or 0-1 floats
    material: str | np.ndarray = "cloth"  # a MATERIALS name, or ids per vertex
    vcolor: np.ndarray | None = None  # its colours in the vertex-colour output (None: colors)


@dataclass
class RenderConfig:
    size: int = 256
    yaws: tuple[float, ...] = DEFAULT_YAWS
    camera: Camera = field(default_factory=Camera)
    lighting: Lighting = field(default_factory=Lighting)
    background: tuple[int, int, int] = (0, 0, 0)
    vary: VaryConfig = field(default_factory=VaryConfig)
    dress: bool = True  # hair, lashes, neck and clothes on the built-in head


class Renderer:
    """One EGL context and its GL objects; create one per process or actor.

    ``device_index`` selects the EGL device (the GPU Ray assigned on a GPU node);
    ``num_threads`` bounds llvmpipe's threads to the CPUs this worker holds.
    """

    def __init__(self, device_index: int | None = None, num_threads: int | None = None):
        import moderngl

        _load_triton_first()
        if num_threads:
            os.environ["LP_NUM_THREADS"] = str(int(num_threads))
        kwargs = {"device_index": int(device_index)} if device_index is not None else {}
        try:
            self.ctx = moderngl.create_context(standalone=True, backend="egl", **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised with the fix
            raise RuntimeError(
                f"could not create a headless OpenGL (EGL) context ({e}); install the system "
                "packages with `apt-get install -y --no-install-recommends libegl1 libgl1`"
            ) from e
        self.gl_renderer = self.ctx.info.get("GL_RENDERER", "?")
        self.software = "llvmpipe" in self.gl_renderer or "softpipe" in self.gl_renderer
        log.info("OpenGL renderer: %s (%s)", self.gl_renderer,
                 "CPU, Mesa" if self.software else "GPU")
        self._progs: dict[tuple, object] = {}
        self._fbos: dict[tuple, object] = {}
        self._white = self.ctx.texture((1, 1), 3, bytes([255, 255, 255]))
        self._tex, self._tex_key = None, None
        self._draws = DrawCache(self.ctx)  # GL buffers of recent meshes (faces/draw.py)
        self._lock = threading.Lock()
        self._thread = threading.get_ident()

    def _check_thread(self):
        # An EGL context is current on the thread that made it only (Ray actors may call
        # from other threads): use get_renderer() in the calling thread.
        if threading.get_ident() != self._thread:
            raise RuntimeError("this Renderer belongs to another thread; call "
                               "faces.render.get_renderer() from the rendering thread")

    def bake_uv(self, mesh: Mesh, attributes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Rasterise per-vertex attributes (V, <=4) into texture space.

        Returns (size, size, 4) float32 with row 0 at v = 1 (image orientation, as textures
        are stored) and the covered-texel mask. Used to make position maps for textures.
        """
        self._check_thread()
        with self._lock:
            if not hasattr(self, "_bake_prog"):
                self._bake_prog = self.ctx.program(vertex_shader=BAKE_VERT,
                                                   fragment_shader=BAKE_FRAG)
            a = np.zeros((mesh.n_vertices, 4), np.float32)
            a[:, : attributes.shape[1]] = attributes
            a[:, 3] = 1.0 if attributes.shape[1] < 4 else a[:, 3]
            f = np.asarray(mesh.faces, np.int64)
            data = np.concatenate([np.asarray(mesh.corner_uv, np.float32).reshape(-1, 2),
                                   a[f].reshape(-1, 4)], 1).astype(np.float32)
            vbo = self.ctx.buffer(data.tobytes())
            vao = self.ctx.vertex_array(self._bake_prog, [(vbo, "2f 4f", "in_uv", "in_attr")])
            rb = self.ctx.renderbuffer((size, size), 4, dtype="f4")
            fbo = self.ctx.framebuffer(color_attachments=[rb])
            fbo.use()
            self.ctx.viewport = (0, 0, size, size)
            fbo.clear(0.0, 0.0, 0.0, 0.0)
            self.ctx.disable(self.ctx.DEPTH_TEST)
            for shift in (0.0, -1.0):  # seam triangles carry u > 1; draw them wrapped too
                self._bake_prog["u_shift"].value = shift
                vao.render()
            out = np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32)
            out = out.reshape(size, size, 4)[::-1].copy()
            for o in (vao, vbo, fbo, rb):
                o.release()
        return out, out[..., 3] > 0.5

    def _program(self, outputs: tuple[str, ...], material: int | None = None):
        key = (outputs, material)
        if key not in self._progs:
            self._progs[key] = self.ctx.program(
                vertex_shader=VERT, fragment_shader=fragment_shader(outputs, material))
        return self._progs[key]

    def _fbo(self, size: int, outputs: tuple[str, ...]):
        key = (size, outputs)
        if key not in self._fbos:
            fmt = {"rgb": (4, "f1"), "vcolor": (4, "f1"), "depth": (1, "f4"), "mask": (1, "f1")}
            att = [self.ctx.renderbuffer((size, size), fmt[n][0], dtype=fmt[n][1]) for n in outputs]
            fbo = self.ctx.framebuffer(color_attachments=att,
                                       depth_attachment=self.ctx.depth_renderbuffer((size, size)))
            self._fbos[key] = (fbo, list(outputs))
        return self._fbos[key]

    def render(self, mesh: Mesh, camera: Camera, size: int = 256, texture: np.ndarray | None = None,
               vertex_colors: np.ndarray | None = None, lighting: Lighting | None = None,
               outputs: tuple[str, ...] = OUTPUTS, background=(0, 0, 0),
               materials: np.ndarray | None = None, extras: list[Extra] | tuple = (),
               vcolor: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Render one view. Returns the requested outputs as arrays (row 0 = top of image):
        rgb/vcolor uint8 (H, W, 3), depth float32 metres along the view axis (0 = empty),
        mask bool (everything drawn). ``materials``: per-vertex MATERIALS ids of ``mesh``
        (default skin); ``extras`` are drawn in the same pass, occluding and occluded.
        ``vertex_colors`` colour an untextured mesh and, unless ``vcolor`` is given, the
        vcolor output (so a heatmap comes from the same pass as the photo)."""
        unknown = set(outputs) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"unknown render outputs {sorted(unknown)}; choose from {OUTPUTS}")
        outputs = tuple(n for n in OUTPUTS if n in outputs)
        lighting = lighting or Lighting()
        self._check_thread()
        with self._lock:
            return self._render(mesh, camera, size, texture, vertex_colors, lighting, outputs,
                                background, materials, extras, vcolor)

    def _set_uniforms(self, prog, camera, lighting):
        view = camera.view()
        uniforms = {"albedo": 0, "key_strength": lighting.key, "fill_strength": lighting.fill,
                    "ambient": lighting.ambient, "key_color": tuple(map(float, lighting.key_color)),
                    "up_dir": tuple((view[:3, :3] @ [0.0, 1.0, 0.0]).tolist())}
        for name, vec in (("key_dir", lighting.key_dir), ("fill_dir", lighting.fill_dir)):
            d = np.asarray(vec, np.float64)
            uniforms[name] = tuple((d / np.linalg.norm(d)).tolist())
        for name, value in uniforms.items():
            if name in prog:  # the compiler drops uniforms an output subset doesn't use
                prog[name].value = value
        if "view" in prog:  # depth-only or mask-only programs need no camera-space normal
            prog["view"].write(view.T.astype("f4").tobytes())
        prog["mvp"].write((camera.projection() @ view).T.astype("f4").tobytes())

    def _render(self, mesh, camera, size, texture, vertex_colors, lighting, outputs, background,
                materials=None, extras=(), vcolor=None):
        ctx, drawn = self.ctx, _attachments(outputs)
        fbo, names = self._fbo(size, drawn)
        fbo.use()
        ctx.viewport = (0, 0, size, size)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(ctx.DEPTH_TEST)
        ctx.disable(ctx.CULL_FACE)
        tex = self._texture(texture) if texture is not None else None
        draws = [(mesh, vertex_colors, vcolor, materials, tex)]
        draws += [(x.mesh, x.colors, x.vcolor, MATERIALS[x.material]
                   if isinstance(x.material, str) else x.material, None) for x in extras]
        shaded, ready = "rgb" in outputs, set()
        for m, colors, vcol, mats, t in draws:
            static, dynamic, ibo, ranges = self._draws.buffers(m, colors, vcol, mats)
            # only the lit photo depends on the material: one program per material then
            for mat, first, count in ranges if shaded else [(None, 0, len(m.faces) * 3)]:
                prog = self._program(drawn, mat)
                if mat not in ready:
                    self._set_uniforms(prog, camera, lighting)
                    ready.add(mat)
                # skip_errors: attributes an output subset doesn't use are compiled away
                vao = ctx.vertex_array(prog, [(dynamic, "3f 3f", "in_pos", "in_normal"),
                                              (static, "2f 3f 3f 1f", "in_uv", "in_color",
                                               "in_vcolor", "in_material")],
                                       index_buffer=ibo, index_element_size=4, skip_errors=True)
                (t or self._white).use(location=0)
                if "has_texture" in prog:
                    prog["has_texture"].value = t is not None
                vao.render(vertices=count, first=first)
                vao.release()
        return self._read(fbo, names, size, background, "mask" in outputs)

    @staticmethod
    def _read(fbo, names, size, background, mask: bool) -> dict[str, np.ndarray]:
        bg = np.asarray(background, np.float32) / 255.0
        out: dict[str, np.ndarray] = {}
        for i, name in enumerate(names):
            if name in ("rgb", "vcolor"):
                a = np.frombuffer(fbo.read(components=4, attachment=i), np.uint8)
                a = a.reshape(size, size, 4)[::-1]
                img = a[..., :3].copy()
                if mask and "mask" not in out:  # alpha is 1 wherever anything was drawn
                    out["mask"] = a[..., 3] > 127
                if name == "rgb" and np.any(bg > 0):
                    img[a[..., 3] == 0] = np.asarray(background, np.uint8)
                out[name] = img
            elif name == "depth":
                a = np.frombuffer(fbo.read(components=1, attachment=i, dtype="f4"), np.float32)
                out[name] = a.reshape(size, size)[::-1].copy()
            else:
                a = np.frombuffer(fbo.read(components=1, attachment=i), np.uint8)
                out[name] = a.reshape(size, size)[::-1] > 127
        return out

    def _texture(self, texture: np.ndarray):
        """Upload (and mipmap) an albedo atlas once: an identity's ~33 renders share it.
        Atlases are treated as immutable; the key also samples the content to be safe."""
        a = np.asarray(texture)
        key = (id(texture), a.__array_interface__["data"][0], a.shape,
               int(a.reshape(-1)[:: 4099].astype(np.int64).sum()))
        if self._tex_key != key:
            if self._tex is not None:
                self._tex.release()
            t = np.ascontiguousarray(np.asarray(a, np.uint8)[::-1, :, :3])
            tex = self.ctx.texture((t.shape[1], t.shape[0]), 3, t.tobytes())
            tex.build_mipmaps()
            tex.filter = (self.ctx.LINEAR_MIPMAP_LINEAR, self.ctx.LINEAR)
            tex.repeat_x, tex.repeat_y = True, False
            self._tex, self._tex_key = tex, key
        return self._tex


def _attachments(outputs: tuple[str, ...]) -> tuple[str, ...]:
    """The outputs a pass draws: the mask is read from a colour attachment's alpha (1
    wherever anything is drawn) when there is one, saving an attachment."""
    if "mask" in outputs and ("rgb" in outputs or "vcolor" in outputs):
        return tuple(n for n in outputs if n != "mask")
    return outputs


def _load_triton_first() -> None:
    """Load Triton (torch's compiler, bundled LLVM) before Mesa's llvmpipe loads its own
    LLVM: imported the other way round, Triton segfaults (measured here: EGL context, then
    `import diffusers` -> torch._dynamo -> triton). Costs ~0.2 s once per process."""
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or unusable: nothing to protect
        pass


_renderers: dict[tuple, Renderer] = {}


def get_renderer(device_index: int | None = None, num_threads: int | None = None) -> Renderer:
    """This thread's renderer (one EGL context per process and thread, made on first use)."""
    key = (device_index, threading.get_ident())
    if key not in _renderers:
        _renderers[key] = Renderer(device_index, num_threads)
    return _renderers[key]
