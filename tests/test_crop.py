"""The face crop: found from the frame's mask, it keeps every region the AUs move, cuts image
and heatmap alike, and leaves frames without a head outline whole."""
import io

import numpy as np
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from train.crop import SIDE, face_box
from train.data import decode_batch


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _gray(blob) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("L"), np.float64)


def test_face_box_keeps_the_pain_regions_and_drops_the_rest(data10):
    """On every pain frame of a generated dataset (3 views): the square from the stored head
    box holds >= 98% of the heatmap (every vertex an AU moves) and is at most 80% of the
    frame's side."""
    from pathlib import Path

    from train.crop import box_from_head

    kept, sides = [], []
    for shard in sorted((Path(data10) / "frames").glob("*.parquet")):
        for r in pq.read_table(shard, columns=["head_box", "heatmap"]).to_pylist():
            if r["heatmap"] is None:
                continue
            heat = _gray(r["heatmap"])
            mask = heat  # the frame's shape
            left, top, right, bottom = box_from_head(r["head_box"], heat.shape)
            assert right - left == bottom - top  # a square
            assert 0 <= left and 0 <= top and right <= mask.shape[1] and bottom <= mask.shape[0]
            kept.append(heat[top:bottom, left:right].sum() / heat.sum())
            sides.append((right - left) / mask.shape[0])
    assert len(kept) >= 200
    assert min(kept) >= 0.98, f"the crop cut off {1 - min(kept):.1%} of a heatmap"
    assert max(sides) <= 0.8


def test_frames_without_a_head_outline_stay_whole():
    assert face_box(np.zeros((40, 50), bool)) == (0, 0, 50, 40)
    assert face_box(np.ones((40, 50), bool)) == (0, 0, 50, 40)  # e.g. the 3DPain layout's


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 63), st.integers(0, 63), st.integers(1, 64), st.integers(1, 64))
def test_face_box_is_a_square_inside_the_frame(x0, y0, w, h):
    mask = np.zeros((64, 64), bool)
    mask[y0:y0 + h, x0:x0 + w] = True
    left, top, right, bottom = face_box(mask)
    side = right - left
    assert side == bottom - top and 0 <= left and 0 <= top and right <= 64 and bottom <= 64
    width = min(64, x0 + w) - x0
    if mask.sum() <= 0.9 * 64 * 64:  # a head outline: 1.1 head widths, shifted, never shrunk
        assert side == min(64, round(SIDE * width))


def test_image_and_heatmap_are_cut_by_the_same_box():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[4:60, 20:44] = 255  # a head 24 px wide
    batch = {"image": [_png(img)], "heatmap": [_png(img)], "mask": [_png(mask)], "pspi": [3],
             "identity": [0], **{a: [0.0] for a in ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")}}
    out = decode_batch(batch, 16)
    assert np.array_equal(out["image"], out["heatmap"])  # pixel-aligned pair
    left, top, right, bottom = face_box(mask > 0)
    want = np.asarray(Image.fromarray(img).crop((left, top, right, bottom))
                      .resize((16, 16), Image.BILINEAR), np.float32)[..., 0] / 255
    assert np.allclose(out["image"][0, 0] * 0.229 + 0.485, want, atol=1e-5)
    whole = decode_batch(batch, 16, crop=False)
    assert not np.allclose(whole["image"], out["image"])
    half = decode_batch(batch, 16, half=True)
    assert half["image"].dtype == np.float16 and np.allclose(half["image"], out["image"],
                                                             atol=1e-2)


def test_a_stored_head_box_wins_over_the_mask():
    """Generated frames' masks cover hair, shoulders and clothes: the crop uses head_box."""
    from train.crop import box_from_head

    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (64, 64, 3), np.uint8)
    everything = np.full((64, 64), 255, np.uint8)
    everything[:2] = 0  # foreground nearly everywhere (not the 'no outline' case)
    batch = {"image": [_png(img)], "heatmap": [None], "mask": [_png(everything)], "pspi": [0],
             "identity": [0], "head_box": [np.array([20, 4, 44, 60], np.int32)],
             **{a: [0.0] for a in ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")}}
    out = decode_batch(batch, 16)
    box = box_from_head((20, 4, 44, 60), (64, 64))
    assert box == face_box(np.pad(np.ones((56, 24), bool), ((4, 4), (20, 20))))
    want = np.asarray(Image.fromarray(img).crop(box).resize((16, 16), Image.BILINEAR),
                      np.float32)[..., 0] / 255
    assert np.allclose(out["image"][0, 0] * 0.229 + 0.485, want, atol=1e-5)
    batch["head_box"] = [None]  # older rows: the mask decides (here: nearly all of it)
    assert not np.allclose(decode_batch(batch, 16)["image"], out["image"])
