"""Wavefront OBJ in and out, for the model bridges (plain triangles; UVs per face corner)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ObjMesh:
    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) vertex indices
    corner_uv: np.ndarray | None  # (F, 3, 2), or None without vt
    texture: Path | None  # the material's map_Kd, when the .mtl names one


def write_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    path = Path(path)
    with open(path, "w") as f:
        np.savetxt(f, np.asarray(vertices, np.float64), fmt="v %.9g %.9g %.9g")
        np.savetxt(f, np.asarray(faces, np.int64) + 1, fmt="f %d %d %d")
    return path


def read_obj(path: str | Path) -> ObjMesh:
    """Vertices, triangles (polygons fanned) and corner UVs of an OBJ file; ValueError in one
    sentence when it is not one."""
    path = Path(path)
    v, vt, faces, fuv, mtllib = [], [], [], [], None
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            v.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            vt.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            idx = [p.split("/") for p in parts[1:]]
            for k in range(1, len(idx) - 1):  # a polygon as a fan of triangles
                tri = [idx[0], idx[k], idx[k + 1]]
                faces.append([int(t[0]) for t in tri])
                fuv.append([int(t[1]) if len(t) > 1 and t[1] else 0 for t in tri])
        elif parts[0] == "mtllib":
            mtllib = line.split(None, 1)[1].strip()
    if not v or not faces:
        raise ValueError(f"{path} is not an OBJ mesh (no vertices or no faces)")
    verts = np.asarray(v, np.float64)
    f = np.asarray(faces, np.int64)
    f = np.where(f < 0, len(verts) + f, f - 1)
    if f.min() < 0 or f.max() >= len(verts):
        raise ValueError(f"{path}: a face refers to a vertex that is not there")
    uv = None
    if vt and np.all(np.asarray(fuv) != 0):
        t = np.asarray(fuv, np.int64)
        t = np.where(t < 0, len(vt) + t, t - 1)
        uv = np.asarray(vt, np.float64)[t]
    return ObjMesh(verts, f, uv, _map_kd(path, mtllib))


def _map_kd(obj: Path, mtllib: str | None) -> Path | None:
    if not mtllib or not (obj.parent / mtllib).exists():
        return None
    m = re.search(r"^\s*map_Kd\s+(.+?)\s*$", (obj.parent / mtllib).read_text(errors="replace"),
                  re.M)
    return obj.parent / m.group(1).split()[-1] if m else None
