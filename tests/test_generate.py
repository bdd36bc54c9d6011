"""`pain3d generate` end to end on a local Ray with the built-in models."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cluster.cli import main
from faces.au import pspi
from pipelines.tasks import FRAME_SCHEMA, sample_id

pytestmark = pytest.mark.usefixtures("ray_local")
REPO = Path(__file__).resolve().parent.parent


def _frames(out) -> "pa.Table":  # noqa: F821
    return pads.dataset(str(Path(out) / "frames"), format="parquet").to_table()


@pytest.fixture(scope="module")
def dataset8(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "ds"
    rc = main(["generate", "--config", "local", "--identities", "8", "--out", str(out)])
    assert rc == 0
    return out


def test_counts_schema_and_pairs(dataset8):
    t = _frames(dataset8)
    assert t.num_rows == 8 * 11 * 3
    for f in FRAME_SCHEMA:  # the data contract's columns with their types
        assert t.schema.field(f.name).type == f.type, f.name
    rows = t.drop(["image", "mask"]).to_pylist()
    ids = [r["sample_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert sum(r["heatmap"] is not None for r in rows) == 8 * 10 * 3
    assert all((r["heatmap"] is None) == (r["expression"] == 0) for r in rows)
    by_id = {r["sample_id"]: r for r in rows}
    for r in rows:
        # every pain frame has the neutral frame of the same identity and view
        n = by_id[r["neutral_sample_id"]]
        assert n["identity"] == r["identity"] and n["view"] == r["view"] and n["expression"] == 0
        # PSPI matches the AUs
        assert r["pspi"] == int(pspi(r))
        assert 0 <= r["pspi"] <= 16
        assert len(r["shape_params"]) == 26 and len(r["expression_params"]) == 9
    assert sorted({r["identity"] for r in rows}) == list(range(8))
    assert {r["yaw_deg"] for r in rows} == {-30.0, 0.0, 30.0}
    # the qa stage read every frame back (its figures: tests/test_qa.py)
    assert np.mean([r["qa_face_found"] for r in rows]) >= 0.98
    assert all(r["qa_pass"] is not None and len(r["qa_blendshapes"]) == 52 for r in rows)
    # 80 pain expressions over 16 levels: exactly 5 each
    pain = [r["pspi"] for r in rows if r["expression"] > 0 and r["view"] == 0]
    assert np.bincount(pain, minlength=17)[1:].tolist() == [5] * 16


def test_images_are_real_pictures(dataset8):
    t = _frames(dataset8).slice(0, 6).to_pylist()
    img = np.asarray(Image.open(io.BytesIO(t[4]["image"])))
    mask = np.asarray(Image.open(io.BytesIO(t[4]["mask"]))) > 127
    heat = np.asarray(Image.open(io.BytesIO(t[4]["heatmap"])))
    assert img.shape == (256, 256, 3) and heat.shape == (256, 256, 3)
    assert 0.15 < mask.mean() < 0.8
    assert img[~mask].std() > 1  # background was inpainted (not flat black)
    assert heat[mask].max() > 100 and heat[~mask].max() < 10


def test_manifest_and_meshes(dataset8):
    m = json.loads((dataset8 / "manifest.json").read_text())
    assert m["counts"] == {"identities": 8, "frames": 264, "heatmaps": 240, "pain_frames": 240,
                           "neutral_frames": 24, "duplicate_sample_ids": 0}
    assert sum(m["pspi_histogram"]["frames"]) == 264 and m["pspi_histogram"]["frames"][0] == 24
    assert sum(m["identities_per_group"]["ethnicity"].values()) == 8
    assert m["config"]["generate"]["identities"] == 8 and len(m["config_hash"]) == 16
    obj = (dataset8 / "textured_meshes" / "000003" / "neutral.obj").read_text()
    assert obj.count("\nv ") > 5000 and "mtllib neutral.mtl" in obj
    assert (dataset8 / "textured_meshes" / "000003" / "neutral.png").stat().st_size > 10_000


def test_rerun_skips_everything(dataset8, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (dataset8 / "frames").iterdir()}
    rc = main(["generate", "--config", "local", "--identities", "8", "--out", str(dataset8)])
    assert rc == 0
    assert "0 identities generated, 8 already done" in capsys.readouterr().out
    after = {p.name: p.stat().st_mtime_ns for p in (dataset8 / "frames").iterdir()}
    assert before == after


def test_one_identity_alone_is_identical(dataset8, tmp_path):
    out = tmp_path / "alone"
    assert main(["generate", "--identities", "1", "--start", "5", "--out", str(out)]) == 0
    a = pq.read_table(dataset8 / "frames" / "identity=000005.parquet").to_pylist()
    b = pq.read_table(out / "frames" / "identity=000005.parquet").to_pylist()
    assert len(a) == len(b) == 33
    for ra, rb in zip(a, b):
        for k in ra:
            if k in ("image", "heatmap", "mask"):
                if ra[k] is None:
                    assert rb[k] is None
                    continue
                ia = np.asarray(Image.open(io.BytesIO(ra[k])))
                ib = np.asarray(Image.open(io.BytesIO(rb[k])))
                assert np.array_equal(ia, ib), (ra["sample_id"], k)
            else:
                assert ra[k] == rb[k], (ra["sample_id"], k)


def test_changed_config_refuses_to_mix(dataset8, capsys):
    rc = main(["generate", "--identities", "8", "--out", str(dataset8), "render.size=128"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "different config" in err and "--overwrite" in err


def test_overwrite_regenerates(tmp_path):
    out = tmp_path / "ow"
    assert main(["generate", "--identities", "1", "--out", str(out), "render.size=64",
                 "face.texture_size=128"]) == 0
    first = (out / "frames" / "identity=000000.parquet").stat().st_mtime_ns
    assert main(["generate", "--identities", "1", "--out", str(out), "--overwrite",
                 "render.size=96", "face.texture_size=128"]) == 0
    t = pq.read_table(out / "frames" / "identity=000000.parquet").to_pylist()
    assert np.asarray(Image.open(io.BytesIO(t[0]["image"]))).shape == (96, 96, 3)
    assert (out / "frames" / "identity=000000.parquet").stat().st_mtime_ns != first


def test_export_3dpain_and_read_back(dataset8, tmp_path):
    from pipelines.layout3dpain import read_3dpain

    out = tmp_path / "release"
    assert main(["export", "--format", "3dpain", str(dataset8), str(out)]) == 0
    assert len(list((out / "images").glob("*.png"))) == 264
    assert len(list((out / "images").glob("*_neutral_*.png"))) == 24
    assert len(list((out / "heatmaps").glob("*.png"))) == 240
    assert len(list((out / "annotations").glob("*.json"))) == 80
    a = json.loads((out / "annotations" / "000002_04.json").read_text())
    assert a["pspi"] == int(pspi(a)) and a["identity"] == 2
    assert (out / "textured_meshes" / "000002" / "neutral.obj").exists()
    back = read_3dpain(out)
    assert back.column("qa_pass").null_count == back.num_rows  # no read-back in a release
    from train.data import qa_failures

    with pytest.raises(ValueError, match="no QA results"):
        qa_failures(str(out), [2])
    orig = _frames(dataset8)
    assert back.num_rows == orig.num_rows
    key = ["sample_id", "identity", "expression", "view", "pspi", "AU4", "AU43", "ethnicity"]
    def rows(t):
        return sorted(tuple(r.values()) for r in t.select(key).to_pylist())

    assert rows(back) == rows(orig)
    by_id = {r["sample_id"]: r for r in orig.select(["sample_id", "image"]).to_pylist()}
    for r in back.select(["sample_id", "image"]).slice(0, 10).to_pylist():
        assert r["image"] == by_id[r["sample_id"]]["image"]
    # exporting again onto the same folder is refused without --overwrite
    assert main(["export", str(dataset8), str(out)]) == 2


def test_reader_tolerates_the_release_variations(tmp_path):
    from pipelines.layout3dpain import read_3dpain

    root = tmp_path / "authors"
    for sub in ("images", "heatmaps", "annotations"):
        (root / sub).mkdir(parents=True)
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 90, 80)).save(png, format="PNG")
    for name in ("subjA_neutral", "subjA_1", "subjB_neutral", "subjB_1"):
        (root / "images" / f"{name}.png").write_bytes(png.getvalue())
    (root / "heatmaps" / "subjA_1.png").write_bytes(png.getvalue())
    (root / "annotations" / "subjA_1.json").write_text(json.dumps(
        {"AU04": 3, "au6": 2, "AU_7": 1, "AU9": 0, "AU10": 4, "AU43": 1, "PSPI": 10,
         "ethnicity": "Latino"}))
    (root / "annotations" / "subjB_1.json").write_text(json.dumps({"AU4": 1}))
    # subjB_1 has no heatmap: an error naming it, or (skip) left out
    with pytest.raises(ValueError, match="subjB_1.png has no heatmap"):
        read_3dpain(root)
    assert len(read_3dpain(root, missing="skip")) == 3
    (root / "heatmaps" / "subjB_1.png").write_bytes(png.getvalue())
    t = read_3dpain(root).to_pylist()
    assert len(t) == 4
    a1 = next(r for r in t if r["identity"] == 0 and r["expression"] == 1)
    assert (a1["AU4"], a1["AU6"], a1["AU7"], a1["AU10"], a1["pspi"]) == (3, 2, 1, 4, 10)
    assert a1["heatmap"] is not None and a1["ethnicity"] == "Latino"
    b1 = next(r for r in t if r["identity"] == 1 and r["expression"] == 1)
    assert b1["pspi"] == 1  # PSPI from the AUs when not given
    assert b1["neutral_sample_id"] == sample_id(1, 0, 0)
    (root / "images" / "subjC_2.png").write_bytes(png.getvalue())
    with pytest.raises(ValueError, match="no annotation"):
        read_3dpain(root)


def test_report_writes_card_and_plots(dataset8, tmp_path):
    out = tmp_path / "card"
    assert main(["report", str(dataset8), "--out", str(out)]) == 0
    md = (out / "card.md").read_text()
    assert "identities: 8" in md and "frames: 264" in md and "heatmaps: 240" in md
    assert "| frames | 24 | 15 |" in md  # 24 neutral frames at PSPI 0, 5 x 3 per pain level
    for png in ("pspi_histogram.png", "demographics.png", "preview.png"):
        im = Image.open(out / png)
        assert im.size[0] > 300 and np.asarray(im).std() > 10
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert not (tmp_path / "nothing-here").exists()  # no folder made for a missing dataset


@pytest.mark.slow
def test_sigkill_halfway_then_rerun_is_consistent(tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "cluster.cli", "generate", "--identities", "8", "--out",
           str(out), "render.size=128", "face.texture_size=256", "generate.ray.num_cpus=2",
           "generate.ray.object_store_memory=200000000"]
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    frames = out / "frames"
    deadline = time.time() + 600  # generous: 240 s ran out on a loaded machine
    while time.time() < deadline:
        done = list(frames.glob("identity=*.parquet")) if frames.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)  # the driver and everything it started
    p.wait()
    time.sleep(3)  # a worker already writing may still finish its (whole) shard
    partial = sorted(x.name for x in frames.glob("identity=*.parquet"))
    assert 3 <= len(partial) < 8
    for f in partial:  # every shard present is whole
        assert pq.read_table(frames / f).num_rows == 33
    assert not (out / "manifest.json").exists()
    rc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert f"{8 - len(partial)} identities generated, {len(partial)} already done" in rc.stdout
    t = _frames(out)
    ids = t.column("sample_id").to_pylist()
    assert t.num_rows == 264 and len(set(ids)) == 264
    assert sorted(set(t.column("identity").to_pylist())) == list(range(8))
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["frames"] == 264 and m["counts"]["duplicate_sample_ids"] == 0


def test_stage_failing_on_a_worker_is_one_line(tmp_path, capsys, standin_python,
                                               standin_models):
    """NFR's worker, started inside the rigging actor, finds no NFR code in options.repo."""
    (tmp_path / "empty").mkdir()
    rc = main(["generate", "--identities", "1", "--out", str(tmp_path / "x"),
               "generate.stages.rigging.backend=nfr",
               f"generate.stages.rigging.model={standin_models[0]}",
               f"generate.stages.rigging.options={{python: {standin_python}, "
               f"repo: {tmp_path / 'empty'}}}"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pain3d: error: rigging.backend 'nfr': the model could not start "
                              "(probe): ImportError: cannot import NFR's test_user.py"), err[-1]
    assert not list((tmp_path / "x").glob("frames/*.parquet"))


