"""Stand-in of the real Dino_v2 wrapper: resolves facebook/dinov2-giant from the hub cache."""
import os

import huggingface_hub


class Dino_v2:
    def __init__(self, dino_v2_path):
        path = huggingface_hub.snapshot_download(repo_id=dino_v2_path)
        if not os.path.exists(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path}/config.json not found")
