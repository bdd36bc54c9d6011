"""Vertex data of the renderer's draws, split by how often it changes (faces/render.py).

A mesh is drawn indexed over its unique (vertex, UV) corners: a UV seam duplicates only the
vertices on it, so the vertex shader runs once per corner that differs, not per triangle
corner (8.6 k instead of 49 k for the built-in head). Made at three rates:
- the unique corners and their UVs (a Topology, no GL object): per topology, once;
- a buffer of UVs, colours, vertex-colour output and materials, and the index buffer sorted
  by material (each material's triangles drawn by a program made for it): per (topology,
  colour arrays), i.e. once per identity for its head, hair and body;
- a buffer of positions and normals: per vertex array, i.e. once per expression, shared by
  its views.
Entries are keyed by the arrays' ids and hold the arrays, so an id is never reused while its
entry lives; arrays are treated as immutable once drawn (the pipeline makes new ones).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from faces.geometry import Mesh, vertex_normals


@dataclass
class Topology:
    remap: np.ndarray  # (U,) mesh vertex of each unique corner
    index: np.ndarray  # (F * 3,) uint32 into the unique corners
    uv: np.ndarray  # (U, 2) float32


def topology(faces: np.ndarray, corner_uv: np.ndarray | None, n_vertices: int) -> Topology:
    f = np.asarray(faces, np.int64).reshape(-1)
    if corner_uv is None:
        return Topology(np.arange(n_vertices), f.astype(np.uint32),
                        np.zeros((n_vertices, 2), np.float32))
    uv = np.asarray(corner_uv, np.float32).reshape(-1, 2)
    key = np.empty(len(f), dtype=[("v", "<i8"), ("u", "<f4"), ("w", "<f4")])
    key["v"], key["u"], key["w"] = f, uv[:, 0], uv[:, 1]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return Topology(f[first], inverse.reshape(-1).astype(np.uint32), uv[first])


def _float_colors(colors, n: int) -> np.ndarray:
    if colors is None:
        return np.ones((n, 3), np.float32)
    c = np.asarray(colors, np.float32)
    return c / 255.0 if c.max() > 1.0 else c


def static_data(topo: Topology, n_vertices: int, colors, vcolor, materials) -> np.ndarray:
    """(U, 9) rows of uv, base colour, vertex-colour output and material."""
    col = _float_colors(colors, n_vertices)[topo.remap]
    vcol = col if vcolor is None else _float_colors(vcolor, n_vertices)[topo.remap]
    mat = np.zeros(n_vertices, np.float32) if materials is None else np.broadcast_to(
        np.asarray(materials, np.float32), (n_vertices,))
    return np.concatenate([topo.uv, col, vcol, mat[topo.remap, None]], 1).astype(np.float32)


def material_ranges(topo: Topology, n_vertices: int, materials) -> tuple[np.ndarray, list]:
    """The index buffer with triangles grouped by material, and (material, first index,
    index count) per group. A triangle's material is its last corner's: GL's provoking
    vertex, which the shader's flat material reads."""
    mat = np.zeros(n_vertices, np.int64) if materials is None else np.broadcast_to(
        np.rint(np.asarray(materials, np.float64)).astype(np.int64), (n_vertices,))
    tri = topo.index.reshape(-1, 3)
    tri_mat = mat[topo.remap[tri[:, 2]]]
    order = np.argsort(tri_mat, kind="stable")
    kinds, first, counts = np.unique(tri_mat[order], return_index=True, return_counts=True)
    ranges = [(int(k), 3 * int(f), 3 * int(c)) for k, f, c in zip(kinds, first, counts)]
    return np.ascontiguousarray(tri[order]).reshape(-1), ranges


def dynamic_data(mesh: Mesh, topo: Topology) -> np.ndarray:
    """(U, 6) rows of position and normal."""
    v = np.asarray(mesh.vertices, np.float32)
    n = vertex_normals(v, np.asarray(mesh.faces, np.int64))
    return np.concatenate([v[topo.remap], n[topo.remap]], 1).astype(np.float32)


class _Lru:
    """A few GL objects by key; evicted ones are released. ``owners`` are the arrays a key's
    ids stand for: a hit must hold the very same objects."""

    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def get(self, key, owners: tuple, make):
        hit = self.items.get(key)
        if hit is not None and len(hit[0]) == len(owners) and all(
                a is b for a, b in zip(hit[0], owners)):
            self.items.move_to_end(key)
            return hit[1]
        value = make()
        if hit is not None:
            _release(hit[1])
        self.items[key] = (owners, value)
        while len(self.items) > self.size:
            _release(self.items.popitem(last=False)[1][1])
        return value


def _release(value):
    for o in value if isinstance(value, tuple) else (value,):
        if hasattr(o, "release"):
            o.release()


class DrawCache:
    """GL buffers of recent draws for one context (see the module docstring)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.topologies = _Lru(8)
        self.statics = _Lru(16)
        self.dynamics = _Lru(16)

    def buffers(self, mesh: Mesh, colors, vcolor, materials):
        """(static buffer, dynamic buffer, index buffer, material ranges) of one draw."""
        faces, uv = mesh.faces, mesh.corner_uv
        topo = self.topologies.get(("t", id(faces), id(uv), mesh.n_vertices), (faces, uv),
                                   lambda: topology(faces, uv, mesh.n_vertices))
        static, ibo, ranges = self.statics.get(
            ("s", id(faces), id(uv), id(colors), id(vcolor), id(materials)),
            (faces, uv, colors, vcolor, materials),
            lambda: self._static(topo, mesh.n_vertices, colors, vcolor, materials))
        dynamic = self.dynamics.get(
            ("d", id(mesh.vertices), id(faces), id(uv)), (mesh.vertices, faces, uv),
            lambda: self.ctx.buffer(dynamic_data(mesh, topo).tobytes()))
        return static, dynamic, ibo, ranges

    def _static(self, topo, n_vertices, colors, vcolor, materials):
        index, ranges = material_ranges(topo, n_vertices, materials)
        data = static_data(topo, n_vertices, colors, vcolor, materials)
        return self.ctx.buffer(data.tobytes()), self.ctx.buffer(index.tobytes()), ranges
