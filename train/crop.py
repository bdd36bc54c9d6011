"""The face-centred crop the models see: a square found from the frame's foreground mask, so
the face fills the network's input instead of a quarter of it.

The mask covers the whole head (hair, ears and neck too). Measured on built-in heads at yaw
-30/0/+30 (40 identities, 1,200 pain frames): the pain heatmap (every vertex an AU moves) lies
between 0.18 and 1.34 head widths below the mask's top and within the head's width; a square of
1.1 head widths centred 0.76 widths below the top keeps >= 99.4% of its mass (mean 99.95%).
The same box cuts the image and its heatmap, so the pair stays pixel-aligned.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

SIDE = 1.1  # the square's side, in head widths
CENTRE = 0.76  # its centre below the mask's top, in head widths
FULL = 0.9  # a mask covering more of the frame than this is no head outline (e.g. 3DPain's)


def face_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the face square in ``mask``'s pixels (a mask of the
    bare head); the whole frame when the mask outlines no head (empty or nearly full)."""
    h, w = mask.shape[:2]
    ys, xs = np.nonzero(mask)
    if len(ys) == 0 or len(ys) > FULL * h * w:
        return 0, 0, w, h
    return box_from_head((xs.min(), ys.min(), xs.max() + 1), (h, w))


def box_from_head(head: tuple, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The face square from the head's extent (left, top, right[, bottom]) in a frame of
    ``shape`` (h, w): generated frames store it (``head_box``), since their mask also
    covers hair, shoulders and clothes."""
    h, w = shape
    left, top, right = (float(v) for v in head[:3])
    width = right - left
    if width <= 0:
        return 0, 0, w, h
    side = int(min(h, w, round(SIDE * width)))
    cx, cy = (left + right) / 2, top + CENTRE * width
    left = int(np.clip(round(cx - side / 2), 0, w - side))  # shifted inside, never shrunk
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    return left, top, left + side, top + side


def crop_resize(im: Image.Image, box: tuple[int, int, int, int] | None, size: int) -> Image.Image:
    """``im`` cut to ``box`` (None: the whole image) and resized to size x size."""
    if box is not None and box != (0, 0) + im.size:
        im = im.crop(box)
    return im.resize((size, size), Image.BILINEAR)
