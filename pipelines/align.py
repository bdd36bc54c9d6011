"""Face alignment from 66 AAM landmarks (UNBC-McMaster's, the iBUG 68-point scheme without the
two inner mouth corners): a similarity transform (rotation, uniform scale, shift) that puts five
stable points -- both eye centres, the nose tip and the mouth corners -- where they lie in the
face crop the models are trained on, so a real frame is framed like a synthetic one.

TEMPLATE is measured, not guessed: ``docs/align_template.py`` renders built-in frontal faces,
cuts them with the training crop (``train/crop.box_from_head``) and reads the five points with
MediaPipe's face landmarker. Re-run it if the crop or the renderer changes.
"""
from __future__ import annotations

import cv2
import numpy as np

N_POINTS = 66
RIGHT_EYE = list(range(36, 42))  # the subject's right eye: on the image's left
LEFT_EYE = list(range(42, 48))
NOSE_TIP = 30
MOUTH_CORNERS = (48, 54)

# (x, y) of right eye centre, left eye centre, nose tip, mouth corners in the unit square of
# the training crop: the mirror-symmetric mean over 264 frontal frames of data/pain3d-24
# (docs/align_template.py; per-point spread 0.006-0.024 in x, 0.04-0.05 in y)
TEMPLATE = np.array([[0.320, 0.373], [0.680, 0.373], [0.500, 0.581],
                     [0.360, 0.814], [0.640, 0.814]], np.float64)


# MediaPipe's 478-point mesh: the points matching the iBUG ones above (the same five
# alignment points, for frames without AAM landmarks; docs/align_template.py reads them too)
MP_POINTS = {"right eye": [33, 133, 159, 145], "left eye": [362, 263, 386, 374],
             "nose tip": [4], "right mouth corner": [61], "left mouth corner": [291]}


def mp_key_points(mesh: np.ndarray) -> np.ndarray:
    """The five alignment points (5, 2) of MediaPipe's (478, 2) face mesh."""
    p = np.asarray(mesh, np.float64)
    return np.stack([p[ix].mean(0) for ix in MP_POINTS.values()])


def key_points(landmarks: np.ndarray) -> np.ndarray:
    """The five alignment points (5, 2) of a (66, 2) landmark array."""
    p = np.asarray(landmarks, np.float64)
    if p.shape != (N_POINTS, 2) or not np.isfinite(p).all():
        raise ValueError(f"expected {N_POINTS} finite (x, y) landmarks, got shape {p.shape}")
    return np.stack([p[RIGHT_EYE].mean(0), p[LEFT_EYE].mean(0), p[NOSE_TIP],
                     p[MOUTH_CORNERS[0]], p[MOUTH_CORNERS[1]]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity transform taking ``src`` points onto ``dst``."""
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32),
                                       method=cv2.LMEDS)
    if m is None:
        raise ValueError("the landmarks are degenerate (all points coincide)")
    return m


def warp(image: np.ndarray, key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the size x size face whose five ``key`` points land on the template, the 2x3
    transform). Pixels outside the frame repeat its border, as a crop near the edge of a
    photo would look."""
    m = similarity(key, TEMPLATE * size)
    out = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_AREA
                         if m[0, 0] ** 2 + m[0, 1] ** 2 < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return out, m


def align(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the size x size aligned face, the 66 landmarks in its pixels)."""
    out, m = warp(image, key_points(landmarks), size)
    pts = np.asarray(landmarks, np.float64) @ m[:, :2].T + m[:, 2]
    return out, pts.astype(np.float32)


def landmarks_problem(landmarks: np.ndarray) -> str | None:
    """Why a landmark array cannot align a face (None: it can): the archive has empty files,
    files with another row count and files whose points coincide."""
    p = np.asarray(landmarks, np.float64)
    if p.shape != (N_POINTS, 2):
        return f"{p.shape[0] if p.ndim else 0} rows, not {N_POINTS}"
    if not np.isfinite(p).all():
        return "non-finite coordinates"
    k = key_points(p)
    if np.linalg.norm(k[1] - k[0]) < 1.0 or np.ptp(k, axis=0).max() < 2.0:
        return "its points coincide"
    return None


def place_template(box: tuple[float, float, float, float], angle_deg: float = 0.0
                   ) -> np.ndarray:
    """66 plausible landmarks whose five key points are the template placed in ``box`` (left,
    top, right, bottom; a square), rotated by ``angle_deg`` about its centre. Test fixtures use
    it to write UNBC-style landmark files for rendered faces."""
    left, top, right, _ = box
    side = right - left
    key = TEMPLATE * side + [left, top]
    pts = np.zeros((N_POINTS, 2))
    jaw = np.linspace(-1, 1, 17)
    cx, cy = left + side / 2, top + side * 0.5
    pts[:17] = np.stack([cx + 0.42 * side * jaw, cy + side * (0.05 + 0.4 * (1 - jaw ** 2))], 1)
    pts[17:27] = np.stack([np.linspace(left + 0.25 * side, left + 0.75 * side, 10),
                           np.full(10, top + 0.31 * side)], 1)
    pts[27:36] = key[2] + np.stack([np.zeros(9), np.linspace(-0.15, 0.0, 9) * side], 1)
    pts[NOSE_TIP] = key[2]
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 6, endpoint=False)),
                     0.5 * np.sin(np.linspace(0, 2 * np.pi, 6, endpoint=False))], 1) * 0.05 * side
    pts[RIGHT_EYE] = key[0] + ring - ring.mean(0)
    pts[LEFT_EYE] = key[1] + ring - ring.mean(0)
    mouth = (key[3] + key[4]) / 2
    half = (key[4] - key[3]) / 2
    outer = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    pts[48:60] = mouth + np.stack([-np.cos(outer) * half[0], 0.35 * np.sin(outer) * half[0]], 1)
    pts[48], pts[54] = key[3], key[4]
    inner = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    pts[60:66] = mouth + np.stack([np.cos(inner) * 0.6 * half[0], 0.15 * np.sin(inner) * half[0]],
                                  1)
    if angle_deg:
        m = cv2.getRotationMatrix2D((float(cx), float(left + side * 0.5)), angle_deg, 1.0)
        pts = pts @ m[:, :2].T + m[:, 2]
    return pts
