"""The stand-in model folders: NFR's data bundle and Hunyuan3D's weights folder (hub cache
layout, as huggingface_hub writes it), with placeholder contents."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

STANDINS = Path(__file__).parent
NFR_REPO = STANDINS / "NFR_pytorch"
HUNYUAN_REPO = STANDINS / "Hunyuan3D-2.1"
NFR_HEAD = "ICT_augment_cnn_ext_dfn4_grad"


def make_nfr_bundle(root: Path) -> Path:
    import torch

    (root / "data/ICT_live_100").mkdir(parents=True, exist_ok=True)
    (root / "data/MF_all_v5").mkdir(parents=True, exist_ok=True)
    np.save(root / "data/ICT_live_100/gradients_std.npy", np.ones((1, 1, 9), np.float32))
    with open(root / "data/MF_all_v5/img_stat.pkl", "wb") as f:
        pickle.dump({"mean": 0.5, "std": 0.25}, f)
    (root / "experiments" / NFR_HEAD).mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"gain": torch.ones(1)}},
               root / "experiments" / NFR_HEAD / f"{NFR_HEAD}_0.pth")
    return root


def _hub_repo(hub: Path, repo_id: str, files: dict[str, str]) -> None:
    rev = "0" * 40
    base = hub / ("models--" + repo_id.replace("/", "--"))
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(rev)
    for name, text in files.items():
        p = base / "snapshots" / rev / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def make_hunyuan_model(root: Path) -> Path:
    _hub_repo(root / "hub", "tencent/Hunyuan3D-2.1",
              {"hunyuan3d-paintpbr-v2-1/model_index.json": json.dumps({"_class_name": "x"})})
    _hub_repo(root / "hub", "facebook/dinov2-giant", {"config.json": "{}"})
    (root / "ckpt").mkdir(parents=True, exist_ok=True)
    (root / "ckpt" / "RealESRGAN_x4plus.pth").write_bytes(b"stand-in")
    return root
