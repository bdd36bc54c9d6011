"""Stand-in of the real MeshRender: holds the mesh and texture, saves them via mesh_utils."""
import numpy as np

try:
    from .mesh_utils import load_mesh, save_mesh
except ImportError:
    print("Bpy IO CAN NOT BE Imported!!!")


class MeshRender:
    def __init__(self, default_resolution=1024, texture_size=1024, bake_mode="back_sample",
                 raster_mode="cr"):
        self.texture_size = texture_size
        self.tex = None

    def load_mesh(self, mesh, scale_factor=1.15, auto_center=True):
        self.vtx_pos, self.pos_idx, self.vtx_uv, self.uv_idx, _ = load_mesh(mesh)

    def set_texture(self, tex, force_set=False):
        self.tex = np.asarray(tex, np.float32)

    def save_mesh(self, mesh_path, downsample=False):
        tex = self.tex
        if downsample:
            tex = tex[::2, ::2]
        save_mesh(mesh_path, self.vtx_pos, self.pos_idx, self.vtx_uv, self.uv_idx, tex)
