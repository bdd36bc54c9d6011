"""Stand-in of the real mesh_utils: imports bpy, writes OBJ (v, vt, f v/vt) + MTL + JPG."""
import os

import bpy  # noqa: F401  (the real module needs Blender's module too)
import numpy as np
from PIL import Image


def load_mesh(mesh):
    vtx_pos = np.asarray(mesh.vertices, np.float32)
    pos_idx = np.asarray(mesh.faces, np.int32)
    vtx_uv = np.asarray(mesh.visual.uv, np.float32)
    return vtx_pos, pos_idx, vtx_uv, pos_idx, None


def save_mesh(mesh_path, vtx_pos, pos_idx, vtx_uv, uv_idx, texture, metallic=None,
              roughness=None, normal=None):
    base = os.path.splitext(mesh_path)[0]
    name = os.path.basename(base)
    with open(mesh_path, "w") as f:
        f.write(f"mtllib {name}.mtl\no {name}\n")
        np.savetxt(f, vtx_pos, fmt="v %.6f %.6f %.6f")
        np.savetxt(f, vtx_uv, fmt="vt %.6f %.6f")
        f.write("s 0\nusemtl Material\n")
        for a, b in zip(pos_idx + 1, uv_idx + 1):
            f.write("f " + " ".join(f"{i}/{j}" for i, j in zip(a, b)) + "\n")
    Image.fromarray((np.clip(texture, 0, 1) * 255).astype(np.uint8)).save(base + ".jpg",
                                                                          quality=95)
    with open(base + ".mtl", "w") as f:
        f.write(f"newmtl Material\nKd 0.8 0.8 0.8\nmap_Kd {name}.jpg\n")


def convert_obj_to_glb(obj_path, glb_path):
    raise RuntimeError("the stand-in cannot convert to GLB (the real one runs Blender)")
