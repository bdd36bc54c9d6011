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
from pipelines.tasks import FRAME_SCHEMA

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
    deadline = time.time() + 240
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
