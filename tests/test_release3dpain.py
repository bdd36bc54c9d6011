"""`pain3d import 3dpain` on the authors' release as published: their file names, jpg and
png frames, heatmaps by the `_heatmap` suffix, `.tar.gz` bundles as on Hugging Face, and
their split CSV."""
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cluster.cli import main
from pipelines.import3dpain import split_from_file
from pipelines.layout3dpain import read_3dpain
from pipelines.release3dpain import classify, identity_numbers, scan
from pipelines.tasks import sample_id

SUBJECTS = {"flame_sample_0000": 0, "flame_sample_0003": 3, "flame_sample_0007": 7}


def _image(colour, fmt) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format=fmt)
    return buf.getvalue()


def release_files() -> dict[str, bytes]:
    """Relative path -> bytes of a small release in the authors' names: per subject two
    neutral views and three pain expressions in two views (view 000 jpg, view 001 png), one
    annotation and one heatmap per pain expression."""
    files = {}
    for s, ident in SUBJECTS.items():
        for k, v in enumerate(("textured_view_000_inpainted.jpg", "view_001.png")):
            fmt = "JPEG" if v.endswith("jpg") else "PNG"
            files[f"meshes_inpainted/{s}_neutral_{v}"] = _image((100 + ident, 10, k), fmt)
            for e in (1, 2, 3):
                files[f"meshes_inpainted/{s}_pain_{e}_{v}"] = _image((ident, e, k), fmt)
        for e in (1, 2, 3):
            a = {"AU4": e, "AU6": 1, "AU7": 2, "AU9": 0, "AU10": e % 2, "AU43": 1,
                 "PSPI": e + 2 + e % 2 + 1}
            files[f"annotations/{s}_pain_{e}_annotations.json"] = json.dumps(a).encode()
            files[f"heatmaps/{s}_pain_{e}_heatmap.png"] = _image((200, ident, e), "PNG")
    files["README.md"] = b"# 3D-Pain"
    files["textured_meshes/flame_sample_0000/mesh.obj"] = b"v 0 0 0\n"
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def pack_like_hugging_face(root: Path, files: dict[str, bytes], per_bundle: int = 10) -> Path:
    """Each top folder's files in sorted chunks, as <folder>/<folder>_00000.tar.gz, ...;
    members named by file name only (one subject's frames span two bundles)."""
    by_top: dict[str, list[str]] = {}
    for rel in sorted(files):
        top = rel.split("/")[0]
        if "/" in rel and top != "textured_meshes":
            by_top.setdefault(top, []).append(rel)
        else:
            write_tree(root, {rel: files[rel]})
    for top, rels in by_top.items():
        (root / top).mkdir(parents=True, exist_ok=True)
        for k in range(0, len(rels), per_bundle):
            with tarfile.open(root / top / f"{top}_{k // per_bundle:05d}.tar.gz", "w:gz") as t:
                for rel in rels[k:k + per_bundle]:
                    info = tarfile.TarInfo(Path(rel).name)
                    info.size = len(files[rel])
                    t.addfile(info, io.BytesIO(files[rel]))
    return root


def check_table(t, files):
    rows = t.to_pylist()
    assert len(rows) == 3 * (2 + 3 * 2)
    assert {r["identity"] for r in rows} == set(SUBJECTS.values())
    by_id = {r["sample_id"]: r for r in rows}
    for s, ident in SUBJECTS.items():
        for e in (1, 2, 3):
            a = json.loads(files[f"annotations/{s}_pain_{e}_annotations.json"])
            for view, v in enumerate(("textured_view_000_inpainted.jpg", "view_001.png")):
                r = by_id[sample_id(ident, e, view)]
                assert (r["AU4"], r["AU6"], r["AU7"], r["AU10"], r["AU43"], r["pspi"]) == (
                    a["AU4"], a["AU6"], a["AU7"], a["AU10"], a["AU43"], a["PSPI"])
                assert r["image"] == files[f"meshes_inpainted/{s}_pain_{e}_{v}"]
                assert r["heatmap"] == files[f"heatmaps/{s}_pain_{e}_heatmap.png"]
                n = by_id[r["neutral_sample_id"]]  # its own identity's neutral, same view
                assert (n["identity"], n["expression"], n["view"]) == (ident, 0, view)
                assert n["image"] == files[f"meshes_inpainted/{s}_neutral_{v}"]


def test_name_rules():
    assert classify(("meshes_inpainted", "flame_sample_0000_pain_3_textured_view_000_inpainted"
                     ".jpg"))[2] == {"subject": "flame_sample_0000", "expression": 3, "view": 0}
    assert classify(("x", "flame_sample_0012_pain_10_view_001.png"))[2] == {
        "subject": "flame_sample_0012", "expression": 10, "view": 1}
    assert classify(("flame_sample_0000_neutral_textured_view_002_inpainted.jpeg",))[2] == {
        "subject": "flame_sample_0000", "expression": 0, "view": 2}
    assert classify(("flame_sample_0000_pain_3_annotations.json",))[:2] == (
        "authors' annotation", "annotation")
    assert classify(("hm", "flame_sample_0000_pain_3_heatmap.png"))[1] == "heatmap"
    assert classify(("images", "000012_03_2.png"))[2] == {"subject": "000012", "expression": 3,
                                                          "view": 2}
    assert classify(("other", "000012_03_2.png")) is None  # pain3d's names only in images/
    assert classify(("flame_sample_0000_pain_3_preview.gif",)) is None
    assert identity_numbers(["flame_sample_0007", "flame_sample_0000"]) == {
        "flame_sample_0000": 0, "flame_sample_0007": 7}
    assert identity_numbers(["subjB", "subjA"]) == {"subjA": 0, "subjB": 1}


def test_unpacked_release_reads_in_place(tmp_path):
    files = release_files()
    root = write_tree(tmp_path / "rel", files)
    check_table(read_3dpain(root), files)
    idx = scan(root)
    assert idx.unmatched == [str(root / "README.md")] and idx.meshes == 1


def test_bundled_release_imports_with_each_frame_paired_to_its_neutral(ray_local, tmp_path,
                                                                      capsys):
    files = release_files()
    root = pack_like_hugging_face(tmp_path / "hf", files)
    assert len(list((root / "meshes_inpainted").glob("*.tar.gz"))) == 3  # 8 frames a subject
    out = tmp_path / "imported"
    assert main(["import", "3dpain", str(root), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 file(s) match no name rule" in err and "README.md" in err
    check_table(pq.read_table(out / "frames"), files)
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["frames"] == 24 and m["counts"]["identities"] == 3
    assert m["files"]["files_by_rule"] == {"authors' annotation": 9, "authors' heatmap": 9,
                                           "authors' neutral frame": 6,
                                           "authors' pain frame": 18}
    assert m["files"]["textured_mesh_files"] == 1 and m["files"]["unmatched"]["files"] == 1
    summaries = {json.loads(p.read_text())["name"] for p in (out / "import").glob("*.json")}
    assert summaries == set(SUBJECTS)


def test_missing_heatmap_and_annotation_are_named(tmp_path):
    files = release_files()
    del files["heatmaps/flame_sample_0003_pain_2_heatmap.png"]
    root = write_tree(tmp_path / "rel", files)
    with pytest.raises(ValueError, match="flame_sample_0003_pain_2_textured_view_000_inpainted"
                                         ".jpg has no heatmap"):
        read_3dpain(root)
    assert len(read_3dpain(root, missing="skip")) == 24 - 2
    (root / "annotations/flame_sample_0007_pain_1_annotations.json").unlink()
    with pytest.raises(ValueError, match="flame_sample_0007_pain_1_.* has no annotation"):
        read_3dpain(root, missing="skip")


def split_csv(path: Path, parts: dict[str, int]) -> Path:
    rows = ["annotation_base_name,split"] + [f"{s}_pain_{e},{k}" for s, k in parts.items()
                                            for e in (1, 2, 3)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_split_file_gives_the_files_split(tmp_path):
    root = write_tree(tmp_path / "rel", release_files())
    csv = split_csv(tmp_path / "split.csv", {"flame_sample_0000": 0, "flame_sample_0003": 1,
                                             "flame_sample_0007": 2, "flame_sample_0099": 0})
    split = split_from_file(str(root), str(csv))
    assert {k: split[k] for k in ("train", "val", "test")} == {"train": [0], "val": [3],
                                                              "test": [7]}
    assert split["source"]["split_file"] == str(csv) and split["source"][
        "subjects_in_file_not_in_data"] == 1
    short = split_csv(tmp_path / "short.csv", {"flame_sample_0000": 0})
    with pytest.raises(ValueError, match="no row for 2 subject"):
        split_from_file(str(root), str(short))
    bad = tmp_path / "bad.csv"
    bad.write_text("annotation_base_name,split\nflame_sample_0000_pain_1,0\n"
                   "flame_sample_0000_pain_2,2\n")
    with pytest.raises(ValueError, match="puts subject flame_sample_0000 in two splits"):
        split_from_file(str(root), str(bad))


@pytest.mark.slow
def test_train_with_the_split_file_uses_exactly_its_split(ray_local, tmp_path):
    from tests.conftest import TINY_TRAIN

    files = release_files()
    root = pack_like_hugging_face(tmp_path / "hf", files)
    out = tmp_path / "imported"
    assert main(["import", "3dpain", str(root), "--out", str(out)]) == 0
    csv = split_csv(tmp_path / "split.csv", {"flame_sample_0000": 2, "flame_sample_0003": 0,
                                             "flame_sample_0007": 1})
    runs = tmp_path / "runs"
    assert main(["train", "teacher", "--data", str(out), "--split-file", str(csv), "--name",
                 "t", "train.epochs=1", f"train.storage={runs}", *TINY_TRAIN,
                 "train.num_workers=1"]) == 0
    split = json.loads((runs / "t" / "split.json").read_text())
    assert (split["train"], split["val"], split["test"]) == ([3], [7], [0])
    assert split["source"]["sha256"] and split["source"]["split_file"] == str(csv)


def test_every_name_rule_is_in_the_readme_with_its_example():
    from pipelines.release3dpain import RULES

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name, _, _, _, example in RULES:
        assert f"| {name} |" in readme and example in readme
