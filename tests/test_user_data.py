"""Issue 27's cases, each through the command line with a sandbox snapshot: pain3d replaces
or deletes only what its own records say it wrote, its silent wrong results are now right or
an error, and each failure is one line (exit 2) that names the problem and the fix."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cluster.cli import main
from pipelines import guard
from tests.sandbox import assert_kept, one_error_line as _one_line, run_cli as _run
from tests.sandbox import snapshot

pytestmark = pytest.mark.usefixtures("ray_local")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def d3(data10, tmp_path_factory):
    dest = tmp_path_factory.mktemp("ud") / "d3"
    shutil.copytree(data10, dest)
    return dest


@pytest.fixture(scope="module")
def rel(d3, tmp_path_factory):
    """An export of d3 in the authors' layout (pain3d's own, sealed)."""
    out = tmp_path_factory.mktemp("rel") / "rel"
    assert main(["export", str(d3), str(out)]) == 0
    return out


def _bare_checkpoint(folder: Path, meta=None) -> Path:
    from train.loop import save_model
    from train.model import ModelConfig, ViTPain

    save_model(ViTPain(ModelConfig(img_size=32, backbone_kwargs={"depth": 1, "patch_size": 8},
                                   head_hidden=16), weights_follow=True), folder, meta)
    return folder


# ---- D1-D6: data loss ----

def test_d1_report_never_replaces_an_export_or_a_demo(rel, d3, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(rel, exp)
    (exp / "mine.txt").write_text("x")
    for folder, kind in ((exp, "export"), (_demo_folder(tmp_path / "demo"), "demo")):
        before = snapshot(tmp_path)
        rc, err, lines = _run(["report", d3, "--out", folder], capsys)
        _one_line(rc, err, lines, f"it is a pain3d {kind} folder, not a report")
        assert_kept(before, tmp_path)
    rep = tmp_path / "rep"
    assert _run(["report", d3, "--out", rep], capsys)[0] == 0
    (rep / "notes.md").write_text("mine")
    before = snapshot(tmp_path)
    rc, err, lines = _run(["report", d3, "--out", rep], capsys)
    _one_line(rc, err, lines, "notes.md was added after pain3d wrote")
    assert_kept(before, tmp_path)


def _demo_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    guard.mark_root(guard.storage.resolve(str(path)), "demo", owns_root=True)
    (path / "demo.json").write_text("{}")
    (path / "data").mkdir()
    (path / "data" / "run.json").write_text("{}")
    return path


def test_d1_an_export_with_a_users_file_is_not_replaced(rel, d3, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(rel, exp)
    (exp / "README_release.txt").write_text("my notes")
    before = snapshot(exp)
    rc, err, lines = _run(["export", d3, exp, "--overwrite"], capsys)
    _one_line(rc, err, lines, "README_release.txt was added after pain3d wrote")
    assert snapshot(exp) == before


def test_d1_export_overwrite_replaces_another_kind_only_when_all_pain3d(d3, tmp_path, capsys):
    """The user's --overwrite lets export replace a report (another kind) that holds only
    what pain3d wrote; without it, or with a user's file inside, it refuses."""
    rep = tmp_path / "rep"
    assert _run(["report", d3, "--out", rep], capsys)[0] == 0
    before = snapshot(tmp_path)
    rc, err, lines = _run(["export", d3, rep], capsys)
    _one_line(rc, err, lines, "exists; pass --overwrite")
    assert_kept(before, tmp_path)
    (rep / "notes.md").write_text("mine")
    before = snapshot(tmp_path)
    rc, err, lines = _run(["export", d3, rep, "--overwrite"], capsys)
    _one_line(rc, err, lines, "notes.md was added after pain3d wrote")
    assert_kept(before, tmp_path)
    (rep / "notes.md").unlink()
    assert _run(["export", d3, rep, "--overwrite"], capsys)[0] == 0
    assert json.loads((rep / guard.MARKER).read_text())["kind"] == "export"
    assert (rep / "images").is_dir() and not (rep / "index.html").exists()


def _bad_release(rel: Path, where: Path) -> tuple[Path, Path]:
    shutil.copytree(rel, where)
    bad = sorted((where / "images").glob("*_03_1.png"))[0]
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    return where, bad


def test_d2_failed_first_import_keeps_the_users_import_and_manifest(rel, tmp_path, capsys):
    rel_bad, bad = _bad_release(rel, tmp_path / "rel_bad")
    u2 = tmp_path / "u2"
    (u2 / "import").mkdir(parents=True)
    (u2 / "import" / "subjects.csv").write_text("a")
    (u2 / "manifest.json").write_text("{}")
    before = snapshot(u2)
    rc, err, lines = _run(["import", "3dpain", rel_bad, "--out", u2], capsys)
    _one_line(rc, err, lines, "already holds import/, manifest.json that pain3d did not write")
    assert snapshot(u2) == before
    # W3: into a fresh folder the bad image is named, and nothing is left
    rc, err, lines = _run(["import", "3dpain", rel_bad, "--out", tmp_path / "fresh"], capsys)
    _one_line(rc, err, lines, f"{bad} is not a readable image")
    assert not (tmp_path / "fresh").exists()


def test_d3_import_overwrite_never_empties_a_users_import_folder(rel, tmp_path, capsys):
    u1 = tmp_path / "u1"
    assert _run(["import", "3dpain", rel, "--out", u1], capsys)[0] == 0
    assert guard.is_record(json.loads((u1 / "manifest.json").read_text()), "manifest")
    (u1 / "import" / "my_subjects.csv").write_text("a")
    before = snapshot(u1)
    rc, err, lines = _run(["import", "3dpain", rel, "--out", u1, "--missing-heatmaps", "skip",
                           "--overwrite"], capsys)
    _one_line(rc, err, lines, "import/my_subjects.csv is not a file pain3d writes there")
    assert snapshot(u1) == before
    (u1 / "import" / "my_subjects.csv").unlink()
    assert _run(["import", "3dpain", rel, "--out", u1, "--missing-heatmaps", "skip",
                 "--overwrite"], capsys)[0] == 0  # pain3d's own import: replaced


def test_d3_generate_and_import_never_overwrite_a_users_manifest(rel, tmp_path, capsys):
    for argv in (["generate", "--identities", "2"], ["import", "3dpain", rel]):
        u3 = tmp_path / f"u3-{argv[0]}"
        u3.mkdir()
        (u3 / "manifest.json").write_text('{"mine": true}')
        before = snapshot(u3)
        rc, err, lines = _run(argv + ["--out", u3], capsys)
        _one_line(rc, err, lines, "already holds manifest.json that pain3d did not write")
        assert snapshot(u3) == before


@pytest.mark.parametrize("marked", [False, True])
def test_d4_a_users_run_json_never_makes_frames_deletable(marked, tmp_path, capsys):
    u4 = tmp_path / "u4"
    (u4 / "frames").mkdir(parents=True)
    (u4 / "run.json").write_text('{"experiment": 7}')
    (u4 / "frames" / "my_labels.csv").write_text("a")
    if marked:  # even inside a folder pain3d has marked, a user's run.json is not pain3d's
        guard.mark_root(guard.storage.resolve(str(u4)), "dataset")
    before = snapshot(u4)
    for extra in ([], ["--overwrite"]):
        rc, err, lines = _run(["generate", "--identities", "1", "--out", u4, *extra], capsys)
        _one_line(rc, err, lines)
        assert "--overwrite" not in lines[0] and "hash None" not in lines[0]
        assert ("run.json is not a pain3d record" if marked else
                "already holds frames/, run.json that pain3d did not write") in lines[0]
        assert snapshot(u4) == before


def test_d5_evaluate_out_never_replaces_a_users_folder_or_file(d3, tmp_path, capsys):
    ck = _bare_checkpoint(tmp_path / "ck")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.md").write_text("my own metrics")
    (tmp_path / "notes.txt").write_text("notes")
    before = snapshot(tmp_path)
    base = ["evaluate", "--checkpoint", ck, "--data", d3, "--split", "all", "--mode", "teacher"]
    rc, err, lines = _run(base + ["--out", mine], capsys)
    _one_line(rc, err, lines, "no pain3d marker")
    t0 = time.time()
    rc, err, lines = _run(base + ["--out", tmp_path / "notes.txt"], capsys)
    _one_line(rc, err, lines, "notes.txt: it is a file")
    assert time.time() - t0 < 5  # refused before any work
    assert_kept(before, tmp_path)
    out = tmp_path / "ev"
    for _ in range(2):  # its own evaluation folder is replaced
        assert _run(base + ["--out", out], capsys)[0] == 0
    pred = pq.read_table(out / "predictions.parquet")
    assert pred.num_rows == 330 and len(set(pred.column("sample_id").to_pylist())) == 330
    for col in ("identity", "view", "pspi", "AU4", "AU4_pred", "class_probs", "pspi_expected",
                "p_pspi_ge1", "pain_pspi_ge3"):
        assert col in pred.column_names, col
    probs = np.stack(pred.column("class_probs").to_numpy(zero_copy_only=False))
    assert probs.shape == (330, 17) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert np.allclose(pred.column("pspi_expected").to_numpy(), probs @ np.arange(17), atol=1e-4)
    frames = pq.read_table(d3 / "frames", columns=["sample_id", "pspi", "view"]).to_pylist()
    truth = {r["sample_id"]: (r["pspi"], r["view"]) for r in frames}
    got = {r["sample_id"]: (r["pspi"], r["view"]) for r in
           pred.select(["sample_id", "pspi", "view"]).to_pylist()}
    assert got == truth


def test_d6_preview_never_writes_over_a_file_it_did_not_make(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    rc, err, lines = _run(["preview", "--identities", "1", "--out", notes], capsys)
    _one_line(rc, err, lines, "exists and is not a contact sheet pain3d wrote")
    assert notes.read_text() == "my notes"
    sheet = tmp_path / "p.png"
    for _ in range(2):  # its own contact sheet is replaced
        assert _run(["preview", "--identities", "1", "--out", sheet, "render.size=64",
                     "face.texture_size=64"], capsys)[0] == 0
    assert len(list(tmp_path.iterdir())) == 2


# ---- W1-W5: silent wrong results ----

def test_w1_export_import_round_trip_keeps_each_frames_yaw(rel, d3, tmp_path, capsys):
    from pipelines.layout3dpain import read_3dpain

    back = {r["sample_id"]: r["yaw_deg"] for r in read_3dpain(rel).select(
        ["sample_id", "yaw_deg"]).to_pylist()}
    orig = {r["sample_id"]: r["yaw_deg"] for r in pq.read_table(
        d3 / "frames", columns=["sample_id", "yaw_deg"]).to_pylist()}
    assert back.keys() == orig.keys() and len({round(v) for v in orig.values()}) == 3
    assert all(back[k] == pytest.approx(orig[k]) for k in orig)
    old = tmp_path / "old"  # an export made before this fix: one yaw per annotation (view 0's)
    shutil.copytree(rel, old)
    for p in (old / "annotations").glob("*.json"):
        a = json.loads(p.read_text())
        a["yaw_deg"] = a.pop("yaw_deg_by_view")["0"]
        p.write_text(json.dumps(a))
    t = read_3dpain(old).select(["view", "yaw_deg"]).to_pylist()
    v0 = {round(r["yaw_deg"]) for r in t if r["view"] == 0}
    assert len(v0) == 1 and all(np.isnan(r["yaw_deg"]) for r in t if r["view"] != 0)


def test_w2_resume_on_another_dataset_is_refused(d3, tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "t").mkdir(parents=True)
    guard.mark_root(guard.storage.resolve(str(runs)), "runs")
    split = json.loads(json.dumps({"train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8, 9]}))
    (runs / "t" / "split.json").write_text(json.dumps(split))
    (runs / "t" / "config.json").write_text(json.dumps({"data": "/data/first-dataset"}))
    before = snapshot(runs)
    rc, err, lines = _run(["train", "teacher", "--data", d3, "--name", "t", "--resume",
                           f"train.storage={runs}"], capsys)
    _one_line(rc, err, lines, "was trained on /data/first-dataset, not", str(d3))
    assert snapshot(runs) == before


def test_w3_export_refuses_a_corrupt_image_in_the_dataset(d3, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(d3, src)
    shard = sorted((src / "frames").glob("*.parquet"))[2]
    t = pq.read_table(shard)
    images = t.column("image").to_pylist()
    images[5] = images[5][:300]  # a truncated PNG inside an otherwise readable shard
    t = t.set_column(t.column_names.index("image"), "image",
                     __import__("pyarrow").array(images, t.schema.field("image").type))
    pq.write_table(t, shard)
    sid = t.column("sample_id")[5].as_py()
    rc, err, lines = _run(["export", src, tmp_path / "out"], capsys)
    _one_line(rc, err, lines, f"the image of frame {sid} is not a readable image")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_w4_half_written_checkpoints_are_removed(tmp_path):
    import torch

    from pipelines import storage
    from train.loop import complete_checkpoint
    from train.run_folder import fit_run, remove_partial_checkpoints

    loc = storage.resolve(str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    guard.mark_root(loc, "runs")

    def checkpoint(name, cut=None):
        d = tmp_path / "runs" / "r" / name
        (d / "model").mkdir(parents=True)
        torch.save({"epoch": 1}, d / "state.pt")
        torch.save({"w": torch.zeros(50_000)}, d / "model" / "model.pt")
        (d / "model" / "model_config.json").write_text("{}")
        if cut is not None:
            data = (d / "model" / "model.pt").read_bytes()
            (d / "model" / "model.pt").write_bytes(data[:cut])
        return d

    good, half, empty = checkpoint("checkpoint_000"), checkpoint("checkpoint_001", 100_000), \
        checkpoint("checkpoint_002", 0)
    assert complete_checkpoint(good) and not complete_checkpoint(half)
    assert not complete_checkpoint(empty)
    assert remove_partial_checkpoints(loc, "r") == ["checkpoint_001", "checkpoint_002"]
    assert good.is_dir() and not half.exists() and not empty.exists()

    def fails():  # a new run whose only checkpoint is half-written when the disk fills
        checkpoint("checkpoint_000", 1000).parent.joinpath("split.json").write_text("{}")
        raise OSError(28, "No space left on device", str(tmp_path / "runs" / "n"))

    with pytest.raises(OSError) as e:
        fit_run(loc, "n", None, [], {}, lambda: fails())
    assert not (tmp_path / "runs" / "n").exists() and e.value.pain3d_nothing_kept


def test_w4_truncated_model_is_named(d3, tmp_path, capsys):
    ck = _bare_checkpoint(tmp_path / "ck")
    data = (ck / "model.pt").read_bytes()
    (ck / "model.pt").write_bytes(data[: len(data) // 2])
    rc, err, lines = _run(["evaluate", "--checkpoint", ck, "--data", d3, "--split", "all",
                           "--mode", "teacher", "--out", tmp_path / "ev"], capsys)
    _one_line(rc, err, lines, f"{ck / 'model.pt'} is truncated or not a torch checkpoint")
    assert not (tmp_path / "ev").exists()


def test_w5_an_archive_with_no_frames_is_an_error(tmp_path, capsys, monkeypatch):
    import cluster.runtime
    from pipelines.unbc import REQUIRED

    for d in REQUIRED:
        (tmp_path / "a" / d / "042-ll042").mkdir(parents=True)
    monkeypatch.setattr(cluster.runtime, "init_ray", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("Ray started before the archive was checked")))
    rc, err, lines = _run(["import", "unbc", tmp_path / "a", "--out", tmp_path / "o"], capsys)
    _one_line(rc, err, lines, "holds no frames")
    rc, err, lines = _run(["import", "unbc", tmp_path / "a", "--out", tmp_path / "o",
                           "--size", "0"], capsys)
    _one_line(rc, err, lines, "--size must be between 16 and 1024")
    assert not (tmp_path / "o").exists()


# ---- tracebacks that are now one line ----

@pytest.mark.parametrize("text,needle", [("[1, 2]", "holds a JSON list, not an object"),
                                         ('{"AU4": null}', "AU4 is null, not a number"),
                                         ('{"AU4": "high"}', 'AU4 is "high", not a number')])
def test_bad_annotations_are_one_line(rel, tmp_path, text, needle, capsys):
    r = tmp_path / "r"
    shutil.copytree(rel, r)
    ann = sorted((r / "annotations").glob("*.json"))[0]
    ann.write_text(text)
    rc, err, lines = _run(["import", "3dpain", r, "--out", tmp_path / "o"], capsys)
    _one_line(rc, err, lines, str(ann), needle)


def test_huge_config_and_nested_alias_bombs_are_refused_at_once(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("seed: 0\n" + "# padding\n" * 300_000)
    bomb = tmp_path / "bomb.yaml"
    lines = ["train:", "  model:", "    backbone_kwargs:", '      a0: &a0 ["x", "x", "x", "x"]']
    lines += [f"      a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              for i in range(1, 14)]
    bomb.write_text("\n".join(lines) + "\n")
    for cfg, needle in ((big, "over the 1,048,576 a config may have"),
                        (bomb, "expands to more than 100,000 values")):
        t0 = time.time()
        rc, err, out = _run(["preview", "--config", cfg, "--out", tmp_path / "p.png"], capsys)
        _one_line(rc, err, out, str(cfg), needle)
        assert time.time() - t0 < 5


def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for delay in (0.0, 0.8):  # after numpy starts loading: inside pain3d's imports, not
        # inside the interpreter's own start (where no Python program can catch it)
        p = subprocess.Popen([sys.executable, "-m", "cluster.entry", "preview", "--identities",
                              "8", "--out", str(tmp_path / "p.png")], cwd=tmp_path, env=env,
                             stderr=subprocess.PIPE, text=True)
        maps, deadline = Path(f"/proc/{p.pid}/maps"), time.time() + 60
        while "_multiarray_umath" not in maps.read_text() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        p.send_signal(2)
        err = p.communicate(timeout=120)[1]
        assert p.returncode == 130, err[-2000:]
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
            "pain3d: interrupted"), err[-2000:]


# ---- hangs and unclear messages ----

def test_dead_ray_address_is_named_within_the_timeout(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_ADDRESS="127.0.0.1:1")
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "cluster.entry", "generate", "--identities", "1",
                        "--out", str(tmp_path / "o"), "generate.ray.connect_timeout_s=2"],
                       env=env, capture_output=True, text=True, timeout=120)
    lines = [x for x in r.stderr.splitlines() if x.startswith("pain3d: error:")]
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "cannot reach the Ray cluster at RAY_ADDRESS=127.0.0.1:1" in lines[0]
    assert "unset RAY_ADDRESS" in lines[0] and time.time() - t0 < 60
    assert not (tmp_path / "o").exists()


def test_evaluate_names_the_split_the_dataset_lacks(d3, tmp_path, capsys):
    split = {"train": [100, 101], "val": [102], "test": [103, 104]}
    ck = _bare_checkpoint(tmp_path / "ck", {"mode": "teacher", "split": split})
    for which in ("test", "all"):
        rc, err, lines = _run(["evaluate", "--checkpoint", ck, "--data", d3, "--split", which,
                               "--out", tmp_path / "ev"], capsys)
        _one_line(rc, err, lines, f"holds none of the {len(split[which]) if which != 'all' else 5}"
                  f" identities of the {which} split")


def test_unknown_backbone_is_named_before_ray_and_by_submit(d3, tmp_path, capsys, monkeypatch):
    import cluster.runtime
    from tests.raycluster import free_port

    monkeypatch.setattr(cluster.runtime, "init_ray", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("Ray started before the backbone was checked")))
    args = ["train", "teacher", "--data", d3, f"train.storage={tmp_path}",
            "train.model.backbone=resnet_nope"]
    rc, err, lines = _run(args, capsys)
    _one_line(rc, err, lines, "train.model.backbone 'resnet_nope' is not a timm model")
    rc, err, lines = _run(["submit", "--address", f"http://127.0.0.1:{free_port()}", *args],
                          capsys)
    _one_line(rc, err, lines, "train.model.backbone 'resnet_nope' is not a timm model")


def test_train_storage_that_is_a_file_is_named(d3, tmp_path, capsys):
    f = tmp_path / "runs"
    f.write_text("not a folder")
    rc, err, lines = _run(["train", "teacher", "--data", d3, f"train.storage={f}",
                           "train.epochs=1"], capsys)
    _one_line(rc, err, lines, f"train.storage {f} is a file")
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize("code,needle", [(28, "the disk holding /x/y is full"),
                                         (30, "/x/y is on a read-only file system"),
                                         (20, "/x/y lies under a file")])
def test_errno_messages_name_the_path_and_the_fix(code, needle):
    from cluster.console import user_error
    from pipelines import storage

    e = OSError(code, os.strerror(code), "/x/y/.report.tmp-1")
    assert user_error(storage.explain(storage.resolve("/x/y"), e)).startswith(needle)
    ray_error = type("ActorDiedError", (Exception,), {"__module__": "ray.exceptions"})
    ray_text = ray_error(f"Traceback ...\nOSError: [Errno {code}] {os.strerror(code)}: "
                         "'/x/y'")  # as an actor's failure arrives: its traceback as text
    assert user_error(ray_text).startswith(needle)


def test_interrupt_advice_only_when_there_is_something_to_resume():
    from cluster.console import interrupted_line

    e = KeyboardInterrupt()
    assert "--resume" in interrupted_line("train", e)
    e.pain3d_nothing_kept = True
    line = interrupted_line("train", e)
    assert "--resume" not in line and "nothing was kept" in line
