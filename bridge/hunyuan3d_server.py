"""Hunyuan3D 2.1 paint's side of the bridge (runs in its environment: Python 3.10,
torch 2.5.1, diffusers 0.30, bpy, the compiled rasteriser).

As the repository's ``hy3dpaint/demo.py`` does: work in ``hy3dpaint/`` (its modules import
one another by absolute name and find ``cfgs/`` and the ``hunyuanpaintpbr`` custom
pipeline relative to the working directory), apply ``utils.torchvision_fix`` when present,
build ``Hunyuan3DPaintPipeline(Hunyuan3DPaintConfig(max_num_view, resolution))`` once and
call it per identity with ``mesh_path``, ``image_path``, ``output_mesh_path``,
``use_remesh=False`` and ``save_glb=False``. Weights come from the model folder: the hub
cache under ``<model>/hub`` (HF_HOME, offline) and ``<model>/ckpt/RealESRGAN_x4plus.pth``.
"""
from __future__ import annotations

import glob
import os
import sys


def hub_snapshot(model_dir: str, repo_id: str) -> str | None:
    """The snapshot folder of ``repo_id`` in the hub cache under ``model_dir`` (or None)."""
    pat = os.path.join(model_dir, "hub", "models--" + repo_id.replace("/", "--"), "snapshots", "*")
    found = sorted(glob.glob(pat))
    return found[-1] if found else None


class Server:
    def __init__(self, options: dict, work_dir: str):
        self.o = options
        self.paint_dir = os.path.join(os.path.abspath(options["repo"]), "hy3dpaint")
        self.model_dir = os.path.abspath(options["model"])

    def probe(self) -> dict:
        os.environ["HF_HOME"] = self.model_dir
        os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded at run time
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        missing = []
        for repo_id in ("tencent/Hunyuan3D-2.1", "facebook/dinov2-giant"):
            if hub_snapshot(self.model_dir, repo_id) is None:
                missing.append("%s/hub/models--%s" % (self.model_dir, repo_id.replace("/", "--")))
        ckpt = os.path.join(self.model_dir, "ckpt", "RealESRGAN_x4plus.pth")
        if not os.path.isfile(ckpt):
            missing.append(ckpt)
        if missing:
            raise FileNotFoundError("Hunyuan3D paint needs %s (scripts/setup_model_env.sh "
                                    "hunyuan3d fills the model folder)" % ", ".join(missing))
        try:
            os.chdir(self.paint_dir)  # cfgs/, ckpt/ and the custom pipeline are found from here
            sys.path.insert(0, self.paint_dir)
            try:
                from utils.torchvision_fix import apply_fix
                apply_fix()
            except ImportError:
                pass
            import textureGenPipeline
        except (ImportError, OSError) as e:
            raise ImportError("cannot import hy3dpaint's textureGenPipeline from %s (%s: %s): "
                              "point options.repo at your Hunyuan3D-2.1 clone and "
                              "options.python at the environment its README builds"
                              % (self.paint_dir, type(e).__name__, e))
        self.tgp = textureGenPipeline
        return {"paint_dir": self.paint_dir}

    def load(self) -> dict:
        conf = self.tgp.Hunyuan3DPaintConfig(int(self.o["max_num_view"]),
                                             int(self.o["resolution"]))
        conf.realesrgan_ckpt_path = os.path.join(self.model_dir, "ckpt", "RealESRGAN_x4plus.pth")
        conf.texture_size = int(self.o["paint_texture_size"])
        self.pipeline = self.tgp.Hunyuan3DPaintPipeline(conf)
        return {"texture_size": conf.texture_size}

    def health(self) -> dict:
        return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "hf_home": os.environ.get("HF_HOME")}

    def call(self, args: dict, arrays: dict):
        out = self.pipeline(mesh_path=args["mesh"], image_path=args["image"],
                            output_mesh_path=args["output"], use_remesh=False, save_glb=False)
        return {"path": str(out)}, {}
