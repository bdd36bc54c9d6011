"""The faster renderer draws what the old one drew; draw data, codecs, OBJ text, EGL device
choice (faces/draw.py, pipelines/tasks.py, faces/egl.py)."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from faces.draw import dynamic_data, material_ranges, static_data, topology
from faces.geometry import Mesh


def test_frames_match_the_reference_renders():
    """Frames of the pipeline's render loop (photo, mask, heatmap, head box; then all four
    outputs of Renderer.render) equal those of the renderer before it drew indexed, in one
    pass with the heatmap, on the rasteriser the reference was made with. Pixel for pixel up
    to float rounding: the vertices come out of BLAS, whose kernels round differently from one
    CPU to another, so an edge pixel may move by one level (seen: 3 of 442k values) and depth
    by 3e-7. A renderer that draws anything else differs in thousands of pixels."""
    from tests.render_reference import REFERENCE, render_reference

    ref = np.load(REFERENCE)
    new = render_reference()
    if str(ref["gl_renderer"]) != str(new["gl_renderer"]):
        pytest.skip(f"reference made on {ref['gl_renderer']}, this GL is {new['gl_renderer']}; "
                    "run tests/render_reference.py with the old renderer to remake it")
    for k in ref.files:
        a, b = ref[k], new[k]
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, atol=1e-5, err_msg=f"{k} differs from the reference")
        elif a.dtype.kind in "uib":
            d = np.abs(a.astype(np.int64) - b.astype(np.int64))
            assert d.max() <= 2 and (d > 0).mean() < 1e-4, \
                f"{k} differs from the reference in {(d > 0).sum()} values, by up to {d.max()}"
        else:
            assert np.array_equal(a, b), f"{k} differs from the reference"
    assert new["heatmap"][3:].max() > 100 and new["mask"].mean() > 0.2  # not blank


def test_indexed_topology_rebuilds_every_corner():
    rng = np.random.default_rng(0)
    v = rng.random((6, 3)).astype(np.float32)
    f = np.array([[0, 1, 2], [2, 1, 3], [3, 4, 5], [5, 4, 0]])
    uv = rng.random((4, 3, 2)).astype(np.float32)
    uv[1, 0] = uv[0, 2]  # vertex 2 shares its UV between the first two triangles
    mesh = Mesh(v, f, uv)
    topo = topology(f, uv, len(v))
    assert len(topo.remap) == 11  # 12 corners, one shared (vertex, uv) pair
    corners = topo.index.astype(int)
    assert np.array_equal(topo.remap[corners], f.ravel())
    assert np.array_equal(topo.uv[corners], uv.reshape(-1, 2))
    dyn = dynamic_data(mesh, topo)
    assert np.array_equal(dyn[corners, :3], v[f.ravel()])
    colors = (rng.random((6, 3)) * 255).astype(np.uint8)
    heat = np.zeros((6, 3), np.uint8)
    st = static_data(topo, 6, colors, heat, np.arange(6))
    assert np.allclose(st[corners, 2:5], colors[f.ravel()] / 255.0)
    assert np.all(st[:, 5:8] == 0) and np.array_equal(st[corners, 8], f.ravel())
    mats = np.array([0, 2, 1, 2, 0, 1], np.float32)  # per vertex; a triangle takes its last
    index, ranges = material_ranges(topo, 6, mats)  # last corners 2, 3, 5, 0: 1, 2, 1, 0
    assert ranges == [(0, 0, 3), (1, 3, 6), (2, 9, 3)]
    assert np.array_equal(topo.remap[index.astype(int)].reshape(-1, 3), f[[3, 0, 2, 1]])
    bare = topology(f, None, 6)  # no UVs: one corner per vertex
    assert np.array_equal(bare.remap, np.arange(6)) and np.array_equal(bare.index, f.ravel())


@pytest.mark.parametrize("codec,level", [("png", 1), ("png", 9), ("webp", 1)])
def test_codecs_round_trip_exactly(codec, level):
    from pipelines.tasks import encode_image
    from train.data import _open

    rng = np.random.default_rng(1)
    rgb = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    mask = (rng.random((64, 64)) > 0.5).astype(np.uint8) * 255
    for a in (rgb, mask):
        blob = encode_image(a, codec, level)
        assert blob[:4] == (b"RIFF" if codec == "webp" else b"\x89PNG")
        back = np.asarray(_open(blob).convert("RGB" if a.ndim == 3 else "L"))
        assert np.array_equal(back, a)
    assert len(encode_image(rgb, "png", 9)) <= len(encode_image(rgb, "png", 0))


def test_unknown_codec_is_refused():
    from cluster.config import load_config
    from cluster.validate import ConfigError

    with pytest.raises(ConfigError, match="generate.codec 'jpeg'"):
        load_config("local", ["generate.codec=jpeg"])


def test_obj_text_is_one_line_per_vertex_uv_and_face():
    from pipelines.tasks import _lines

    v = np.array([[0.1234567, -2.0, 3.5], [1e-7, 0.0, -0.0000005]])
    assert _lines("v %.6f %.6f %.6f", v) == [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
    f = np.array([[1, 2, 3], [4, 5, 6]])
    assert _lines("f %d %d %d", f) == ["f 1 2 3", "f 4 5 6"]


def test_egl_device_is_matched_by_pci_address(tmp_path, monkeypatch):
    from faces import egl

    for card, pci in (("card0", "0000:3b:00.0"), ("card1", "0000:5e:00.0")):
        (tmp_path / pci).mkdir()
        (tmp_path / card).mkdir()
        os.symlink(tmp_path / pci, tmp_path / card / "device")
    monkeypatch.setattr(egl, "SYSFS_DRM", str(tmp_path))
    devices = [egl.EglDevice(0, "EGL_EXT_device_drm", "/dev/dri/card1"),
               egl.EglDevice(1, "EGL_EXT_device_drm", "/dev/dri/card0"),
               egl.EglDevice(2, "EGL_MESA_device_software", None)]
    assert egl.normalise_pci("00000000:3B:00.0") == "0000:3b:00.0"
    assert egl.device_for_pci("00000000:3B:00.0", devices) == 1  # not index 0
    assert egl.device_for_pci("00000000:5E:00.0", devices) == 0
    assert egl.device_for_pci("00000000:AF:00.0", devices) is None
    # nvidia-smi (physical GPUs) answers for the first GPU in CUDA_VISIBLE_DEVICES
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\n[ "$4" = "7" ] && echo 00000000:5E:00.0 && exit 0\nexit 6\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:{os.environ['PATH']}")
    assert egl.visible_gpu_pci("7,2") == "0000:5e:00.0"
    assert egl.visible_gpu_pci("3") is None and egl.visible_gpu_pci("") is None


def test_egl_devices_are_enumerated_here():
    from faces.egl import egl_devices

    devices = egl_devices()
    assert devices, "libEGL offers no device enumeration"
    assert all(d.index == i for i, d in enumerate(devices))
    soft = [d for d in devices if "software" in d.extensions]
    assert all(d.drm_file is None and d.pci is None for d in soft)
