"""Stand-in of hy3dpaint/textureGenPipeline.py: same classes, constructor, call and outputs.

Imports its siblings by absolute name (so it only imports with hy3dpaint/ as the working
directory or on sys.path), re-unwraps the mesh with xatlas (always, as the real one does),
and writes ``textured_mesh.obj`` + ``.mtl`` + ``.jpg`` (the texture at half size)."""
import os

import numpy as np
import trimesh
from PIL import Image

from DifferentiableRenderer.MeshRender import MeshRender
from utils.uvwrap_utils import mesh_uv_wrap
from utils.multiview_utils import multiviewDiffusionNet
from utils.image_super_utils import imageSuperNet
from DifferentiableRenderer.mesh_utils import convert_obj_to_glb


class Hunyuan3DPaintConfig:
    def __init__(self, max_num_view, resolution):
        self.device = "cuda"
        self.multiview_cfg_path = "cfgs/hunyuan-paint-pbr.yaml"
        self.custom_pipeline = "hunyuanpaintpbr"
        self.multiview_pretrained_path = "tencent/Hunyuan3D-2.1"
        self.dino_ckpt_path = "facebook/dinov2-giant"
        self.realesrgan_ckpt_path = "ckpt/RealESRGAN_x4plus.pth"
        self.render_size = 1024 * 2
        self.texture_size = 1024 * 4
        self.max_selected_view_num = max_num_view
        self.resolution = resolution


class Hunyuan3DPaintPipeline:
    def __init__(self, config=None):
        self.config = config
        self.models = {}
        self.render = MeshRender(default_resolution=self.config.render_size,
                                 texture_size=self.config.texture_size)
        self.load_models()

    def load_models(self):
        self.models["super_model"] = imageSuperNet(self.config)
        self.models["multiview_model"] = multiviewDiffusionNet(self.config)
        print("Models Loaded.")

    def __call__(self, mesh_path=None, image_path=None, output_mesh_path=None, use_remesh=True,
                 save_glb=True):
        image_prompt = Image.open(image_path)
        path = os.path.dirname(mesh_path)
        if use_remesh:
            raise RuntimeError("the stand-in does not remesh (the real one decimates with "
                               "pymeshlab); call it with use_remesh=False")
        if output_mesh_path is None:
            output_mesh_path = os.path.join(path, "textured_mesh.obj")
        mesh = trimesh.load(mesh_path)
        mesh = mesh_uv_wrap(mesh)
        self.render.load_mesh(mesh=mesh)
        albedo = self.models["multiview_model"](image_prompt, [], prompt="high quality",
                                                custom_view_size=self.config.resolution)
        self.render.set_texture(albedo, force_set=True)
        self.render.save_mesh(output_mesh_path, downsample=True)
        if save_glb:
            convert_obj_to_glb(output_mesh_path, output_mesh_path.replace(".obj", ".glb"))
        return output_mesh_path
