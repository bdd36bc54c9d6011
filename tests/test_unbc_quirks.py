"""The UNBC-McMaster archive's real quirks: malformed landmark files, pure-black frames, AU43
listed without an intensity, and the widespread nested copy that ships no AAM landmarks
(aligned by MediaPipe instead). Each is skipped and counted exactly, never an abort."""
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cluster.cli import main
from pipelines.layout3dpain import load_frames
from pipelines.unbc import read_facs
from tests.unbc_fixture import build_unbc_tree
from train.crop import box_from_head, crop_resize

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def tree(data10, tmp_path_factory):
    root = tmp_path_factory.mktemp("unbcq") / "archive"
    return root, build_unbc_tree(data10, root, subjects=3)


def _where(root, stem):
    return next((root / "Images").rglob(f"{stem}.png")).relative_to(root / "Images").parent


def test_au43_listed_without_intensity_counts_one(tmp_path):
    f = tmp_path / "x_facs.txt"
    f.write_text("   4.0000000e+00   2.0000000e+00\n   4.3000000e+01\n")
    assert read_facs(f) == {4: 2.0, 43: 1.0}
    f.write_text("   4.3000000e+01   0.0000000e+00   0.0000000e+00   0.0000000e+00\n")
    assert read_facs(f) == {43: 1.0}


def test_malformed_landmarks_and_black_frames_are_skipped_and_counted(tree, tmp_path, capsys):
    src, fx = tree
    root = tmp_path / "archive"
    shutil.copytree(src, root)
    stems = sorted(s for s in fx["frames"] if s != fx["planted"].get("no_landmarks"))
    empty, short, same, black, au43 = stems[1], stems[3], stems[5], stems[7], stems[9]
    aam = root / "AAM_landmarks"
    (aam / _where(root, empty) / f"{empty}_aam.txt").write_text("")
    p = aam / _where(root, short) / f"{short}_aam.txt"
    p.write_text("\n".join(p.read_text().splitlines()[:60]) + "\n")
    (aam / _where(root, same) / f"{same}_aam.txt").write_text("   1.0e+02   1.0e+02\n" * 66)
    Image.new("RGB", (320, 240)).save(root / "Images" / _where(root, black) / f"{black}.png")
    facs = root / "Frame_Labels" / "FACS" / _where(root, au43) / f"{au43}_facs.txt"
    facs.write_text(facs.read_text() + "   4.3000000e+01\n")
    out = tmp_path / "out"
    assert main(["import", "unbc", str(root), "--out", str(out), "--size", "64"]) == 0
    err = capsys.readouterr().err
    assert "3 frame(s) with a malformed AAM landmarks file" in err
    assert "1 frame(s) with a blank (pure-black) image" in err
    rows = {r["sample_id"]: r for r in load_frames(str(out)).to_pylist()}
    gone = {empty, short, same, black, fx["planted"]["no_landmarks"]}
    assert set(rows) == set(fx["frames"]) - gone
    m = json.loads((out / "manifest.json").read_text())
    assert {k: v["frames"] for k, v in m["skipped"].items()} == {
        "a malformed AAM landmarks file": 3, "a blank (pure-black) image": 1,
        "no AAM landmarks file": 1}
    assert m["aligners"] == {"aam": len(rows)}
    want = fx["frames"][au43]
    assert rows[au43]["AU43"] == 1.0
    assert rows[au43]["pspi_facs"] == want["pspi_facs"] - want["aus"][43] + 1.0


def test_nested_copy_without_landmarks_is_aligned_by_mediapipe(tree, data10, tmp_path):
    src, fx = tree
    root = tmp_path / "nested"
    for top in ("Images", "Frame_Labels", "Sequence_Labels"):
        shutil.copytree(src / top, root / top / top)
    out = tmp_path / "out"
    assert main(["import", "unbc", str(root), "--out", str(out), "--size", "64"]) == 0
    rows = {r["sample_id"]: r for r in load_frames(str(out)).to_pylist()}
    m = json.loads((out / "manifest.json").read_text())
    no_face = m["skipped"].get("no face found by MediaPipe", {}).get("frames", 0)
    assert len(rows) + no_face == len(fx["frames"]) and len(rows) >= 0.8 * len(fx["frames"])
    assert m["aligners"] == {"mediapipe": len(rows)}
    assert {r["aligner"] for r in rows.values()} == {"mediapipe"}
    assert all(r["pspi"] == fx["frames"][s]["pspi"] for s, r in rows.items())
    src_rows = {x["sample_id"]: x for x in load_frames(data10).to_pylist()}
    corr = []
    for stem in list(rows)[:6]:  # framed like the training crop, as the AAM path frames it
        s = src_rows[fx["frames"][stem]["source"]]
        im = Image.open(io.BytesIO(s["image"])).convert("RGB")
        want = np.asarray(crop_resize(im, box_from_head(s["head_box"], im.size[::-1]), 64), float)
        got = np.asarray(Image.open(io.BytesIO(rows[stem]["image"])), float)
        corr.append(np.corrcoef(want[8:56, 8:56].ravel(), got[8:56, 8:56].ravel())[0, 1])
    assert np.median(corr) > 0.8
