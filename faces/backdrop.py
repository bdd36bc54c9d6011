"""Procedural indoor backdrops behind the head (no Ray, no models).

Each kind is a wall in an indoor colour with a light gradient from the key light's side and
one feature (a door, a window, shelves with books, a hospital curtain, tiles), tinted by the
light's colour temperature and blurred as a portrait lens at this distance would. The image
is wider than the frame: each view takes its own window of it, so the backdrop shifts with the
camera's yaw (parallax), and every view and expression of an identity shares one backdrop.
"""
from __future__ import annotations

import cv2
import numpy as np

from faces.scene import BACKDROPS, Scene, kelvin_rgb

WALLS = [(0.86, 0.84, 0.80), (0.78, 0.72, 0.62), (0.70, 0.72, 0.72), (0.72, 0.78, 0.70),
         (0.70, 0.76, 0.82), (0.62, 0.58, 0.55), (0.88, 0.86, 0.84), (0.55, 0.60, 0.66)]
WIDE = 1.6  # backdrop width over frame width


def _rect(img, x0, y0, x1, y1, color, alpha=1.0):
    h, w = img.shape[:2]
    a, b = int(np.clip(x0 * w, 0, w)), int(np.clip(x1 * w, 0, w))
    c, d = int(np.clip(y0 * h, 0, h)), int(np.clip(y1 * h, 0, h))
    img[c:d, a:b] = img[c:d, a:b] * (1 - alpha) + np.asarray(color) * alpha


def _feature(img: np.ndarray, kind: str, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    side = rng.choice([0.08, 0.62]) + rng.uniform(0, 0.2)  # left or right of the head
    if kind == "door":
        wood = rng.choice([0, 1])
        col = (0.45, 0.30, 0.18) if wood else (0.92, 0.92, 0.90)
        _rect(img, side - 0.01, 0.05, side + 0.23, 1.0, np.asarray(col) * 0.8)  # frame
        _rect(img, side, 0.08, side + 0.22, 1.0, col)
        _rect(img, side + 0.18, 0.55, side + 0.2, 0.58, (0.75, 0.70, 0.55))  # handle
    elif kind == "window":
        _rect(img, side - 0.015, 0.08, side + 0.3, 0.72, (0.95, 0.95, 0.93))
        sky = np.array([0.85, 0.92, 1.0]) * rng.uniform(0.95, 1.1)
        _rect(img, side, 0.1, side + 0.285, 0.7, np.clip(sky, 0, 1))
        _rect(img, side + 0.135, 0.1, side + 0.15, 0.7, (0.95, 0.95, 0.93))  # mullions
        _rect(img, side, 0.39, side + 0.285, 0.405, (0.95, 0.95, 0.93))
    elif kind == "shelves":
        for y in (0.25, 0.5, 0.75):
            x = side - 0.05
            while x < side + 0.35:  # books of random widths and colours
                bw, bh = rng.uniform(0.01, 0.03), rng.uniform(0.1, 0.2)
                _rect(img, x, y - bh, x + bw, y, rng.uniform(0.15, 0.8, 3))
                x += bw + rng.uniform(0.0, 0.01)
            _rect(img, side - 0.06, y, side + 0.37, y + 0.02, (0.40, 0.28, 0.18))
    elif kind == "curtain":
        col = np.asarray([(0.55, 0.70, 0.75), (0.62, 0.75, 0.62), (0.80, 0.78, 0.70)]
                         [rng.integers(3)])
        x = np.linspace(0, 1, w)
        folds = 0.85 + 0.15 * np.sin(x * rng.uniform(40, 70) + 2 * np.sin(x * 7))
        img[:] = col * folds[None, :, None]
    elif kind == "tiles":
        n = rng.integers(5, 9)
        for k in range(1, int(n * WIDE) + 1):
            _rect(img, k / (n * WIDE) - 0.002, 0, k / (n * WIDE) + 0.002, 1, img.mean((0, 1)) * 0.8)
        for k in range(1, n + 1):
            _rect(img, 0, k / n - 0.003, 1, k / n + 0.003, img.mean((0, 1)) * 0.8)


def backdrop(scene: Scene, size: int) -> np.ndarray:
    """The identity's wide backdrop: (size, WIDE * size, 3) float32 sRGB 0-1."""
    if scene.background not in BACKDROPS:
        raise ValueError(f"unknown background {scene.background!r}; choose from {BACKDROPS}")
    rng = np.random.default_rng([scene.background_seed, 5])
    h, w = size, int(round(WIDE * size))
    wall = np.asarray(WALLS[rng.integers(len(WALLS))]) * rng.uniform(0.85, 1.05)
    img = np.broadcast_to(wall, (h, w, 3)).astype(np.float32).copy()
    if scene.background != "plain wall":
        _feature(img, scene.background, rng)
    # light: brighter towards the key light's side and the top, a soft vignette
    x = np.linspace(-1, 1, w)[None, :]
    y = np.linspace(-1, 1, h)[:, None]
    side = np.sin(np.radians(scene.light_azimuth_deg))
    shade = 0.82 + 0.12 * x * side - 0.08 * y - 0.06 * (x ** 2 + y ** 2)
    tint = 0.5 + 0.5 * kelvin_rgb(scene.light_temperature_k)
    img = img * shade[..., None] * tint * min(1.1, 0.8 + 0.2 * scene.light_intensity)
    sigma = max(0.5, size / 100)  # out of focus
    return np.clip(cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma), 0, 1)


def view_window(wide: np.ndarray, yaw_deg: float) -> np.ndarray:
    """The part of the wide backdrop a camera at ``yaw_deg`` sees (square)."""
    h, w = wide.shape[:2]
    shift = (w - h) / 2 * np.clip(-yaw_deg / 45.0, -1, 1)
    x0 = int(round((w - h) / 2 + shift))
    return wide[:, x0:x0 + h]
