"""Stand-in of the real multiviewDiffusionNet: finds its config and custom pipeline relative
to the working directory and its weights through huggingface_hub (offline), then "paints"
the albedo as a function of the UV atlas (red = u, green = v)."""
import os

import huggingface_hub
import numpy as np


class multiviewDiffusionNet:
    def __init__(self, config):
        with open(config.multiview_cfg_path) as f:  # relative to the working directory
            self.cfg = f.read()
        if not os.path.isdir(config.custom_pipeline):
            raise FileNotFoundError(f"custom pipeline {config.custom_pipeline} not found")
        model_path = huggingface_hub.snapshot_download(
            repo_id=config.multiview_pretrained_path, allow_patterns=["hunyuan3d-paintpbr-v2-1/*"])
        model_path = os.path.join(model_path, "hunyuan3d-paintpbr-v2-1")
        if not os.path.exists(os.path.join(model_path, "model_index.json")):
            raise FileNotFoundError(f"{model_path}/model_index.json not found")
        from hunyuanpaintpbr.unet.modules import Dino_v2
        self.dino_v2 = Dino_v2(config.dino_ckpt_path)
        self.size = config.texture_size

    def __call__(self, images, conditions, prompt=None, custom_view_size=None,
                 resize_input=False):
        s = self.size
        u = (np.arange(s) + 0.5) / s
        tex = np.zeros((s, s, 3), np.float32)
        tex[..., 0] = u[None, :]
        tex[..., 1] = 1.0 - u[:, None]  # row 0 is v = 1, as OBJ textures are read
        tex[..., 2] = 0.5
        return tex
