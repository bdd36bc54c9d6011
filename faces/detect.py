"""A classic face detector, as a sanity check that frames look like faces: OpenCV's Haar
cascades (Viola-Jones), the two frontal ones and the profile one in both directions, since
the views turn 30 degrees away from frontal. No weights to download: the cascades ship
with OpenCV (4.x; OpenCV 5's wheels dropped them)."""
from __future__ import annotations

import functools

import numpy as np

CASCADES = ("frontalface_default", "frontalface_alt2", "profileface")
SCALE_FACTOR = 1.05
MIN_NEIGHBORS = 3


@functools.lru_cache(maxsize=1)
def _cascades() -> dict:
    import cv2

    out = {}
    for name in CASCADES:
        c = cv2.CascadeClassifier(cv2.data.haarcascades + f"haarcascade_{name}.xml")
        if c.empty():
            raise RuntimeError(f"OpenCV has no haarcascade_{name}.xml; install opencv-contrib-"
                               "python 4.x (as pyproject.toml pins), not 5.x")
        out[name] = c
    return out


def haar_faces(rgb: np.ndarray, min_size: int | None = None) -> list[tuple[str, tuple]]:
    """Every (cascade, box) found in an RGB frame; boxes are (x, y, w, h) in pixels. Faces
    smaller than ``min_size`` (default: a fifth of the frame) are not looked for."""
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)
    m = int(min_size or max(24, rgb.shape[0] // 5))
    found = []
    for name, c in _cascades().items():
        for flip in ((False, True) if name == "profileface" else (False,)):
            img = np.ascontiguousarray(g[:, ::-1]) if flip else g
            for x, y, w, h in c.detectMultiScale(img, SCALE_FACTOR, MIN_NEIGHBORS,
                                                 minSize=(m, m)):
                x = img.shape[1] - x - w if flip else x
                found.append((name, (int(x), int(y), int(w), int(h))))
    return found
