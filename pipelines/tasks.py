"""The CPU stages of the generation graph, as plain functions over batches of identity rows:
identity sampling, rendering with heatmaps, and encoding + writing one shard per identity."""
from __future__ import annotations

import dataclasses
import io
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from actors.neutral_face import demographics_of
from actors.qa import QA_COLUMNS
from faces.au import PSPI_MAX, pspi
from faces.heatmap import displacement, heat_colors
from faces.identity import make_identity
from faces.models import make_face_model
from faces.photo import identity_setup, render_views
from faces.render import get_renderer
from faces.scene import Scene, camera_for
from faces.rig import RIG_AUS
from pipelines import storage

PSPI_COLS = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")
EXTRA_COLS = ("AU12", "AU25", "AU26")


_MODELS: dict[str, object] = {}


def face_model(face_cfg):
    """One face model per worker process and face config (configs are unhashable
    dataclasses, so they are keyed by their repr)."""
    key = repr(face_cfg)
    if key not in _MODELS:
        from actors.base import StageConfig, check_on_node, stage_files

        check_on_node("render", stage_files("render", StageConfig(), face_cfg))
        _MODELS[key] = make_face_model(face_cfg)
    return _MODELS[key]


# ---- 1. identity rows -----------------------------------------------------------------------

def identity_rows(batch: dict, cfg) -> dict:
    """identity index -> demographics, prompt, shape parameters and the AU plan."""
    model = face_model(cfg.face)
    specs = [make_identity(int(i), cfg.seed, model, cfg.demographics, cfg.pspi)
             for i in batch["identity"]]

    def strings(values):
        return np.array(list(values), dtype=object)

    return {
        "identity": np.array([s.identity for s in specs], np.int64),
        "seed": np.array([s.seed for s in specs], np.int64),
        "age_group": strings(s.demographics.age_group for s in specs),
        "gender": strings(s.demographics.gender for s in specs),
        "ethnicity": strings(s.demographics.ethnicity for s in specs),
        "prompt": strings(s.prompt for s in specs),
        "shape": np.stack([np.asarray(s.shape, np.float32) for s in specs]),
        "aus": np.stack([np.array([[c.get(k, 0.0) for k in RIG_AUS] for c in s.configs],
                                  np.float32) for s in specs]),
    }


# ---- 2. render + heatmaps --------------------------------------------------------------------

def render_rows(batch: dict, cfg) -> dict:
    """Every expression x view: RGB, mask, head box, heatmap (pain only); the identity's
    scene and dressing (scene columns); and the scalp mask per view for inpainting backends
    that paint hair in 2-D (not needed under the built-in head's own hair)."""
    threads = max(1, int(round(cfg.generate.stages.render.num_cpus)))
    os.environ.setdefault("LP_NUM_THREADS", str(threads))
    model = face_model(cfg.face)
    r = get_renderer(num_threads=threads)
    rc = cfg.render
    B, E = batch["vertices"].shape[:2]
    V, S = len(rc.yaws), rc.size
    rgb = np.zeros((B, E, V, S, S, 3), np.uint8)
    mask = np.zeros((B, E, V, S, S), bool)
    heat = np.zeros((B, E, V, S, S, 3), np.uint8)
    boxes = np.zeros((B, E, V, 4), np.int32)
    scene: dict[str, list] = {}
    scenes = []
    for i in range(B):
        tex = batch["texture"][i] if "texture" in batch else None
        vcol = batch["vertex_colors"][i] if "vertex_colors" in batch else None
        neutral = batch["vertices"][i, 0]
        setup = identity_setup(model, int(batch["seed"][i]), int(batch["identity"][i]),
                               demographics_of(batch, i), neutral, tex, rc)
        scenes.append(setup.scene)
        for k, val in setup.columns().items():
            scene.setdefault(k, []).append(val)
        for e in range(E):
            verts = batch["vertices"][i, e]
            hc = None if e == 0 else heat_colors(displacement(neutral, verts, model.template.faces),
                                                 cfg.heatmap.mode, cfg.heatmap.scale_m,
                                                 cfg.heatmap.cmap)
            for v, o in enumerate(render_views(r, model, setup, verts, tex, vcol, rc, hc)):
                rgb[i, e, v], mask[i, e, v], boxes[i, e, v] = o["rgb"], o["mask"], o["head_box"]
                if hc is not None:
                    heat[i, e, v] = o["heatmap"]
    batch.update({"rgb": rgb, "mask": mask, "heatmap": heat, "head_box": boxes})
    batch.update({f"scene_{k}": np.array(v, dtype=object if isinstance(v[0], str) else None)
                  for k, v in scene.items()})
    if needs_scalp(cfg):
        batch["scalp"] = _scalp(batch, scenes, cfg, model, r)
    batch["yaws"] = np.tile(np.asarray(rc.yaws, np.float32), (B, 1))
    return batch


def needs_scalp(cfg) -> bool:
    return cfg.face.model != "builtin" or cfg.generate.stages.inpainting.backend != "builtin"


def _scalp(batch: dict, scenes: list[Scene], cfg, model, r) -> np.ndarray:
    """Where the bare head's scalp shows, per view of the neutral (in each identity's
    scene's cameras)."""
    rc = cfg.render
    cols = np.zeros((model.template.n_vertices, 3), np.uint8)
    cols[model.template.regions.get("scalp", [])] = 255
    B, V = len(batch["identity"]), len(rc.yaws)
    out = np.zeros((B, V, rc.size, rc.size), bool)
    for i, sc in enumerate(scenes):
        mesh = model.mesh(batch["vertices"][i, 0])
        for v, yaw in enumerate(rc.yaws):
            cam = camera_for(rc, model.camera_target, yaw, sc)
            out[i, v] = r.render(mesh, cam, rc.size, vertex_colors=cols,
                                 outputs=("vcolor",))["vcolor"][..., 0] > 127
    return out


# ---- 3. encode + write ------------------------------------------------------------------------

def png_bytes(a: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG of a uint8 array (RGB or grey, from its shape); level 1: speed over size."""
    return encode_image(a, "png", compress_level)


# Lossless WebP at its fastest effort: 19% fewer bytes than PNG level 1, decoded as fast, 1.4x
# its encoding time (benchmarks/render.py); grey arrays come back as RGB with equal channels.
CODECS = {"png": lambda level: {"format": "PNG", "compress_level": level},
          "webp": lambda level: {"format": "WEBP", "lossless": True, "method": 0, "quality": 50}}


def encode_image(a: np.ndarray, codec: str = "png", png_level: int = 1) -> bytes:
    """Lossless bytes of a uint8 array (RGB or grey) in ``codec`` (a CODECS name); every
    reader of the frames table opens them with PIL, whichever codec made them."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, **CODECS[codec](png_level))
    return buf.getvalue()


SCENE_COLUMNS = tuple(f.name for f in dataclasses.fields(Scene)) + ("hair_style", "garment")
SCENE_TYPES = {"background": pa.string(), "background_seed": pa.int64(),
               "hair_style": pa.string(), "garment": pa.string()}

FRAME_SCHEMA = pa.schema(
    [("sample_id", pa.string()), ("identity", pa.int64()), ("expression", pa.int16()),
     ("view", pa.int8()), ("yaw_deg", pa.float32())]
    + [(k, pa.float32()) for k in PSPI_COLS]
    + [("pspi", pa.int8()), ("age_group", pa.string()), ("gender", pa.string()),
       ("ethnicity", pa.string()), ("prompt", pa.string()), ("seed", pa.int64()),
       ("image", pa.binary()), ("heatmap", pa.binary()), ("mask", pa.binary()),
       ("shape_params", pa.list_(pa.float32())), ("expression_params", pa.list_(pa.float32()))]
    + [(k, pa.float32()) for k in EXTRA_COLS]
    + [("neutral_sample_id", pa.string()), ("face_model", pa.string())]
    # the identity's scene and dressing (faces/photo.py) and each frame's head box
    + [(k, SCENE_TYPES.get(k, pa.float32())) for k in SCENE_COLUMNS]
    + [("head_box", pa.list_(pa.int32()))]
    # the AU read-back (actors/qa.py); null where the qa stage did not run
    + [("qa_face_found", pa.bool_())] + [(k, pa.float32()) for k in QA_COLUMNS]
    + [("qa_blendshapes", pa.list_(pa.float32())), ("qa_pass", pa.bool_())])


def table_from_rows(rows: dict[str, list], schema: pa.Schema = FRAME_SCHEMA) -> pa.Table:
    """The frames table (or an importer's, ``schema``: FRAME_SCHEMA plus its own columns)
    from column lists; columns left empty (optional ones) are null."""
    n = len(rows["sample_id"])
    for k, v in rows.items():
        if not v:
            v.extend([None] * n)
    return pa.Table.from_pydict(rows, schema=schema)


def sample_id(identity: int, expression: int, view: int) -> str:
    return f"{identity:06d}_{expression:02d}_{view}"


def shard_name(identity: int) -> str:
    return f"identity={identity:06d}.parquet"


def frames_table(batch: dict, i: int, face_model_name: str, codec: str = "png",
                 png_level: int = 1) -> pa.Table:
    ident = int(batch["identity"][i])
    aus = batch["aus"][i]
    E, V = batch["rgb"].shape[1:3]
    rows: dict[str, list] = {f.name: [] for f in FRAME_SCHEMA}

    def encode(a):
        return encode_image(a, codec, png_level)

    for e in range(E):
        au = dict(zip(RIG_AUS, aus[e].tolist()))
        score = int(round(pspi(au)))
        for v in range(V):
            rows["sample_id"].append(sample_id(ident, e, v))
            rows["identity"].append(ident)
            rows["expression"].append(e)
            rows["view"].append(v)
            rows["yaw_deg"].append(float(batch["yaws"][i][v]))
            for k in PSPI_COLS + EXTRA_COLS:
                rows[k].append(float(au[k]))
            rows["pspi"].append(score)
            for k in ("age_group", "gender", "ethnicity", "prompt"):
                rows[k].append(str(batch[k][i]))
            rows["seed"].append(int(batch["seed"][i]))
            rows["image"].append(encode(batch["rgb"][i, e, v]))
            rows["heatmap"].append(encode(batch["heatmap"][i, e, v]) if e > 0 else None)
            rows["mask"].append(encode(batch["mask"][i, e, v].astype(np.uint8) * 255))
            rows["shape_params"].append(np.asarray(batch["shape"][i], np.float32))
            rows["expression_params"].append(np.asarray(batch["expression_params"][i, e],
                                                        np.float32))
            rows["neutral_sample_id"].append(sample_id(ident, 0, v))
            rows["face_model"].append(face_model_name)
            for k in SCENE_COLUMNS:
                rows[k].append(batch[f"scene_{k}"][i] if f"scene_{k}" in batch else None)
            rows["head_box"].append(batch["head_box"][i, e, v] if "head_box" in batch else None)
            if "qa_face_found" in batch:
                _qa_row(rows, batch, i, e, v)
    return table_from_rows(rows)


def _qa_row(rows: dict, batch: dict, i: int, e: int, v: int) -> None:
    found = bool(batch["qa_face_found"][i, e, v])
    rows["qa_face_found"].append(found)
    for k, x in zip(QA_COLUMNS, batch["qa_values"][i, e, v]):
        rows[k].append(float(x) if np.isfinite(x) else None)
    rows["qa_blendshapes"].append(batch["qa_blendshapes"][i, e, v] if found else None)
    rows["qa_pass"].append(bool(batch["qa_pass"][i, e, v]))


def _lines(fmt: str, rows: np.ndarray) -> list[str]:
    """One formatted line per row (a single %-format over the flat array: ~10x faster than
    an f-string per row, byte for byte the same text)."""
    rows = np.asarray(rows)
    return (((fmt + "\n") * len(rows)) % tuple(rows.ravel().tolist())).splitlines()


def _obj_files(model, vertices: np.ndarray, texture, vertex_colors, name: str) -> dict[str, bytes]:
    """OBJ (+ MTL + PNG albedo when the mesh has UVs) of one mesh."""
    mesh = model.mesh(vertices)
    lines = [f"# pain3d {name}"]
    files: dict[str, bytes] = {}
    v = np.asarray(mesh.vertices, np.float64)
    if mesh.corner_uv is not None and texture is not None:
        lines.insert(1, f"mtllib {name}.mtl")
        lines += _lines("v %.6f %.6f %.6f", v)
        lines += _lines("vt %.6f %.6f", mesh.corner_uv.reshape(-1, 2).astype(np.float64))
        lines.append("usemtl skin")
        t = 3 * np.arange(len(mesh.faces))[:, None] + 1 + np.arange(3)
        lines += _lines("f %d/%d %d/%d %d/%d",
                        np.stack([mesh.faces + 1, t], -1).reshape(len(t), 6).astype(np.int64))
        files[f"{name}.mtl"] = (f"newmtl skin\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\n"
                                f"map_Kd {name}.png\n").encode()
        files[f"{name}.png"] = png_bytes(np.asarray(texture, np.uint8))
    else:
        cols = (np.asarray(vertex_colors, np.float32) / 255.0 if vertex_colors is not None
                else np.ones((mesh.n_vertices, 3)))
        lines += _lines("v %.6f %.6f %.6f %.4f %.4f %.4f", np.c_[v, np.asarray(cols, np.float64)])
        lines += _lines("f %d %d %d", (mesh.faces + 1).astype(np.int64))
    files[f"{name}.obj"] = ("\n".join(lines) + "\n").encode()
    return files


def write_rows(batch: dict, cfg, out_uri: str) -> dict:
    """Encode and write each identity: meshes first, then its Parquet shard (the shard's
    presence marks the identity finished). Returns one summary row per identity."""
    loc = storage.resolve(out_uri)
    model = face_model(cfg.face)
    summary: dict[str, list] = {k: [] for k in ("identity", "frames", "heatmaps", "pspi_hist",
                                                "write_seconds")}
    prov_cols = [k for k in batch if k.endswith(("_gpu", "_node", "_device"))]
    for k in prov_cols:
        summary[k] = []
    for i in range(len(batch["identity"])):
        t0 = time.time()
        ident = int(batch["identity"][i])
        if cfg.generate.write_meshes:
            tex = batch["texture"][i] if "texture" in batch else None
            vcol = batch["vertex_colors"][i] if "vertex_colors" in batch else None
            for rel, data in _obj_files(model, batch["vertices"][i, 0], tex, vcol,
                                        "neutral").items():
                storage.write_bytes(loc, f"textured_meshes/{ident:06d}/{rel}", data)
        table = frames_table(batch, i, model.name, cfg.generate.codec, cfg.generate.png_level)
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression="zstd")
        storage.write_bytes(loc, f"frames/{shard_name(ident)}", buf.getvalue().to_pybytes())
        pspis = np.asarray(table.column("pspi").to_numpy(), int)
        summary["identity"].append(ident)
        summary["frames"].append(table.num_rows)
        summary["heatmaps"].append(int(np.sum(np.asarray(table.column("expression")) > 0)))
        summary["pspi_hist"].append(np.bincount(pspis, minlength=PSPI_MAX + 1))
        summary["write_seconds"].append(time.time() - t0)
        for k in prov_cols:
            summary[k].append(str(batch[k][i]))
    return {k: (np.stack(v) if isinstance(v[0], np.ndarray) else np.array(v, dtype=object)
                if isinstance(v[0], str) else np.array(v)) for k, v in summary.items()}
