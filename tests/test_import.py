"""`pain3d import unbc | 3dpain`: a tree in UNBC-McMaster's exact layout and formats (made from
our renders, tests/unbc_fixture.py) comes back with its labels exactly, its defects counted, its
faces aligned; the 3DPain release's missing heatmaps stop the import or are counted skips."""
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cluster.cli import main
from pipelines.align import align, place_template
from pipelines.layout3dpain import load_frames
from tests.unbc_fixture import build_unbc_tree
from train.crop import box_from_head, crop_resize

pytestmark = pytest.mark.usefixtures("ray_local")
AU_COLS = {4: "AU4", 6: "AU6", 7: "AU7", 9: "AU9", 10: "AU10", 12: "AU12", 20: "AU20",
           25: "AU25", 26: "AU26", 43: "AU43"}


@pytest.fixture(scope="module")
def unbc(data10, tmp_path_factory):
    root = tmp_path_factory.mktemp("unbc") / "archive"
    return root, build_unbc_tree(data10, root, subjects=6)


def test_alignment_undoes_a_roll_and_a_shift():
    rng = np.random.default_rng(3)
    img = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)
    pts = place_template((100, 40, 220, 160))
    ref, ref_pts = align(img, pts, 64)
    m = cv2.getRotationMatrix2D((150, 110), 12, 1.1)
    m[:, 2] += (9, -6)
    moved = cv2.warpAffine(img, m, (320, 240))
    out, out_pts = align(moved, pts @ m[:, :2].T + m[:, 2], 64)
    np.testing.assert_allclose(out_pts, ref_pts, atol=1e-3)
    inner = (slice(8, 56), slice(8, 56))
    assert np.abs(out[inner].astype(float) - ref[inner]).mean() < 4  # same pixels, resampled
    np.testing.assert_allclose(ref_pts[30], [0.5 * 64, 0.581 * 64], atol=1e-3)  # nose tip


def test_unbc_import_reproduces_the_labels_and_counts_the_defects(unbc, data10, tmp_path, capsys):
    root, fx = unbc
    out = tmp_path / "unbc"
    assert main(["import", "unbc", str(root), "--out", str(out), "--size", "64"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: skipped") == 1 and "1 frame(s) with no AAM landmarks" in err
    rows = {r["sample_id"]: r for r in load_frames(str(out)).to_pylist()}
    truth, planted = fx["frames"], fx["planted"]
    assert set(rows) == set(truth) - {planted["no_landmarks"]}
    for stem, r in rows.items():
        want = truth[stem]
        assert (r["subject"], r["sequence"], r["frame"], r["identity"]) == \
            (want["subject"], want["sequence"], want["frame"], want["identity"])
        assert r["pspi"] == want["pspi"] and r["pspi_facs"] == want["pspi_facs"]
        assert {a: r[c] for a, c in AU_COLS.items()} == want["aus"]
        assert r["heatmap"] is None and Image.open(io.BytesIO(r["image"])).size == (64, 64)
    assert rows[planted["mismatch"]]["pspi"] != rows[planted["mismatch"]]["pspi_facs"]
    assert any(r["AU20"] == 2 for r in rows.values())
    m = json.loads((out / "manifest.json").read_text())
    assert [x["frame"] for x in m["pspi_mismatches"]["list"]] == [planted["mismatch"]]
    assert m["skipped"] == {"no AAM landmarks file": {"frames": 1, "example": (
        f"AAM_landmarks/103-tv103/tv103t1aaaff/{planted['no_landmarks']}_aam.txt")}}
    assert m["counts"]["subjects"] == 6 and m["counts"]["frames"] == len(rows)
    assert m["pspi_histogram"]["frames"] == np.bincount(
        [int(r["pspi"]) for r in rows.values()], minlength=17).tolist()
    assert m["per_subject"]["103-tv103"]["skipped"] == 1
    assert sorted(m["sequence_labels"]) == ["opr", "vas"]
    r = rows["tv102t2aaaff001"]
    assert (r["opr"], r["vas"]) == (1, 3)  # subject 2 (n=1): OPR n % 5, VAS (n + s) % 10
    # a frame with no pain in its sequence's start is the neutral reference
    assert rows["tv101t1aaaff002"]["neutral_sample_id"] == "tv101t1aaaff001"
    # the aligned face is the training crop of the render, whatever the roll
    src = {x["sample_id"]: x for x in load_frames(data10).to_pylist()}
    for stem in ("tv101t1aaaff004", "tv103t2aaaff002", "tv102t1aaaff003"):  # rolled -8, +8, 0
        s = src[truth[stem]["source"]]
        im = Image.open(io.BytesIO(s["image"])).convert("RGB")
        want = np.asarray(crop_resize(im, box_from_head(s["head_box"], im.size[::-1]), 64), float)
        got = np.asarray(Image.open(io.BytesIO(rows[stem]["image"])), float)
        assert np.corrcoef(want[8:56, 8:56].ravel(), got[8:56, 8:56].ravel())[0, 1] > 0.9
    # a re-run finds every subject finished and rewrites no shard
    before = {p.name: p.stat().st_mtime_ns for p in (out / "frames").iterdir()}
    assert main(["import", "unbc", str(root), "--out", str(out), "--size", "64"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "frames").iterdir()} == before
    # other settings onto the same folder are refused
    assert main(["import", "unbc", str(root), "--out", str(out), "--size", "96"]) == 2
    assert "other settings (size)" in capsys.readouterr().err


def test_unbc_import_refuses_what_is_not_the_archive(tmp_path, capsys):
    (tmp_path / "Images").mkdir()
    assert main(["import", "unbc", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the UNBC-McMaster archive" in err[0] and \
        "Frame_Labels/PSPI" in err[0]
    assert not (tmp_path / "o").exists()


def test_unbc_import_names_a_corrupt_label_file(unbc, tmp_path, capsys):
    import shutil

    root = tmp_path / "archive"
    shutil.copytree(unbc[0], root)
    bad = next((root / "Frame_Labels" / "FACS").rglob("*_facs.txt"))
    bad.write_text("four six\n")
    out = tmp_path / "o"
    assert main(["import", "unbc", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert bad.name in err and "restore it from the archive" in err
    # no manifest (the import is not whole), no shard of the subject that failed; subjects
    # finished meanwhile stay, for a re-run to resume from
    subject = int(bad.parent.parent.name.split("-")[0])
    assert not (out / "manifest.json").exists()
    assert not (out / "frames" / f"identity={subject:06d}.parquet").exists()


def _png(path: Path, colour=(120, 90, 80)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)


@pytest.fixture
def release(tmp_path):
    """The authors' layout: one heatmap per pain expression, three views, one heatmap lost."""
    root = tmp_path / "release"
    for ident in ("000001", "000002"):
        for v in range(3):
            _png(root / "images" / f"{ident}_neutral_{v}.png")
            for e in (1, 2):
                _png(root / "images" / f"{ident}_{e:02d}_{v}.png")
        for e in (1, 2):
            (root / "annotations").mkdir(parents=True, exist_ok=True)
            (root / "annotations" / f"{ident}_{e:02d}.json").write_text(json.dumps(
                {"AU4": e, "AU6": 1, "AU43": 0, "pspi": e + 1}))
            if (ident, e) != ("000002", 2):
                _png(root / "heatmaps" / f"{ident}_{e:02d}.png", (200, 30, 30))
    return root


def test_3dpain_import_missing_heatmap_is_an_error_or_a_counted_skip(release, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["import", "3dpain", str(release), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "000002_02_0.png has no heatmap" in err and "--missing-heatmaps skip" in err
    assert not out.exists()
    assert main(["import", "3dpain", str(release), "--out", str(out),
                 "--missing-heatmaps", "skip"]) == 0
    assert "warning: skipped 3 frame(s) with no heatmap" in capsys.readouterr().err
    t = load_frames(str(out)).to_pylist()
    assert len(t) == 2 * 3 * 3 - 3
    pain = [r for r in t if r["expression"] > 0]
    assert all(r["heatmap"] is not None for r in pain)  # the expression's one heatmap, per view
    assert {r["pspi"] for r in pain} == {2, 3}
    m = json.loads((out / "manifest.json").read_text())
    assert m["skipped"]["no heatmap"]["frames"] == 3 and m["counts"]["frames"] == 15
