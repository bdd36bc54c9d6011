"""Teacher and student training on Ray Train (2 gloo workers), resume and worker failure."""
import json
from pathlib import Path

import numpy as np
import pytest

from cluster.cli import main
from cluster.config import load_config
from train.data import identity_table, make_split

pytestmark = pytest.mark.usefixtures("ray_local")
from tests.conftest import TINY_CONV, TINY_TRAIN as TINY
from train.faults import KillOnce


def test_split_is_identity_disjoint_stratified_and_seeded(data10):
    ids = identity_table(path=data10)
    s = make_split(ids, (0.7, 0.2, 0.1), seed=3)
    allids = s["train"] + s["val"] + s["test"]
    assert sorted(allids) == sorted(ids) and len(set(allids)) == len(allids)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (7, 2, 1)
    assert make_split(ids, (0.7, 0.2, 0.1), seed=3) == s
    # stratified: a larger population keeps each demographic cell's share in every split
    big = {i: {"age_group": "young" if i % 2 else "elderly", "gender": "man",
               "ethnicity": "White"} for i in range(100)}
    sb = make_split(big, (0.7, 0.2, 0.1), seed=0)
    young_train = sum(1 for i in sb["train"] if i % 2)
    assert abs(young_train - 35) <= 1 and len(sb["train"]) == 70
    with pytest.raises(ValueError):
        make_split(ids, (0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def teacher_run(data10, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    rc = main(["train", "teacher", "--data", data10, "--name", "t", f"train.storage={runs}",
               "train.epochs=2"] + TINY)
    assert rc == 0
    return runs / "t"


def test_teacher_run_folder(teacher_run, data10):
    split = json.loads((teacher_run / "split.json").read_text())
    assert set(split) == {"train", "val", "test"} and not set(split["train"]) & set(split["val"])
    hist = json.loads((teacher_run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]  # numbered from 1, as the bar counts
    for key in ("val_macro_auroc", "val_acc", "val_acc_pm1", "val_acc_pm2", "val_mae_argmax",
                "val_mae_expected", "val_auroc_pspi_ge1", "val_auroc_pspi_ge3", "val_mae_AU4",
                "train_loss", "loss_pspi", "loss_au"):
        assert key in hist[-1]
    for h in hist:  # the loss is its weighted terms (teacher: CE + AU MSE, weights 1 and 1)
        assert h["train_loss"] == pytest.approx(h["loss_pspi"] + h["loss_au"], rel=1e-4)
        assert "loss_pspi_distill" not in h  # absent terms are omitted
    best = Path((teacher_run / "best_checkpoint.txt").read_text())
    assert (best / "model" / "model.pt").exists()
    events = list((teacher_run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    from train.loop import load_model

    m = load_model(best / "model")
    assert m.cfg.img_size == 32


def test_student_distils_from_teacher(teacher_run, data10, tmp_path, capsys):
    best = (teacher_run / "best_checkpoint.txt").read_text()
    rc = main(["train", "student", "--data", data10, "--teacher", best, "--name", "s",
               f"train.storage={tmp_path}", "train.epochs=1",
               "train.model.backbone_kwargs={depth: 2, patch_size: 8, embed_dim: 96, num_heads: 3}"]
              + [a for a in TINY if "backbone_kwargs" not in a])
    assert rc == 0
    assert "student run" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["mode"] == "student" and cfg["teacher"] == best
    hist = json.loads((tmp_path / "s" / "history.json").read_text())
    terms = ("loss_pspi", "loss_au", "loss_pspi_distill", "loss_au_distill", "loss_feat_distill")
    # every term is computed and all but the AU distillation active: at this tiny size
    # the AU heads' final ReLU (the paper's) can output 0 for every frame in both networks
    assert all(k in hist[-1] and hist[-1][k] >= 0 for k in terms)
    assert all(hist[-1][k] > 0 for k in terms if k != "loss_au_distill"), hist[-1]
    w = load_config("local").train.weights  # the paper's weights
    assert hist[-1]["train_loss"] == pytest.approx(
        w.pspi * hist[-1]["loss_pspi"] + w.au * hist[-1]["loss_au"]
        + w.pspi_distill * hist[-1]["loss_pspi_distill"]
        + w.au_distill * hist[-1]["loss_au_distill"]
        + w.feature_distill * hist[-1]["loss_feat_distill"], rel=1e-4)
    # no teacher -> one clear error
    assert main(["train", "student", "--data", data10, "--name", "s2",
                 f"train.storage={tmp_path}"] + TINY) == 2


@pytest.mark.slow  # ~30 s: the local preset's conv student, trained
def test_preset_conv_student_trains_on_cached_face_crops(data10, tmp_path):
    """The local preset's model family end to end: a ResNet student on face crops decoded once
    into the object store; evaluate scores the test split from the checkpoint's own config.
    (Whether it learns is measured on 120 identities: BENCHMARKS.md, Table 2.)"""
    from train.run import train

    cfg = load_config("local", [f"train.storage={tmp_path}", "train.epochs=3",
                                "train.cache_decoded=true", "train.lr_heads=3e-3"] + TINY_CONV)
    train(cfg, "student", data10, "c", distill=False)  # the ablation's first rows
    run = tmp_path / "c"
    cfg = json.loads((run / "config.json").read_text())
    tc = cfg["config"]["train"]
    assert tc["model"]["backbone"] == "resnet18" and tc["model"]["face_crop"]
    assert tc["cache_decoded"]
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_macro_auroc"]) for h in hist)
    best = (run / "best_checkpoint.txt").read_text()
    assert main(["evaluate", "--checkpoint", best, "--data", data10, "--out",
                 str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    split = json.loads((run / "split.json").read_text())
    assert report["frames"] == 33 * len(split["test"]) and report["mode"] == "student"
    assert np.isfinite(report["metrics"]["macro_auroc"])


@pytest.mark.slow  # ~26 s: a second teacher run
def test_existing_run_is_refused_then_resumed(teacher_run, data10, capsys):
    runs = teacher_run.parent
    assert main(["train", "teacher", "--data", data10, "--name", "t", f"train.storage={runs}",
                 "train.epochs=3"] + TINY) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "teacher", "--data", data10, "--name", "t", "--resume",
                 f"train.storage={runs}", "train.epochs=3"] + TINY) == 0
    hist = json.loads((teacher_run / "history.json").read_text())
    assert hist[-1]["epoch"] == 3 and hist[-1]["started_at_epoch"] == 3  # only epoch 3 ran


@pytest.mark.slow  # kill-and-resume: the slow tier
def test_killed_worker_resumes_from_checkpoint(data10, tmp_path):
    from train.run import train

    cfg = load_config("local", [f"train.storage={tmp_path}", "train.epochs=5",
                                "train.max_failures=1"] + TINY)
    # dies at epoch 3 (0-based): the controller registers checkpoints asynchronously, so the
    # one of the epoch just before the crash may not be registered yet; the earlier two are
    res = train(cfg, "teacher", data10, "kill",
                epoch_hook=KillOnce(3, str(tmp_path / "killed-once")))
    assert (tmp_path / "killed-once").exists()
    epochs = [h["epoch"] for h in res.history]
    assert epochs[-1] == 5  # finished (epochs numbered from 1)
    assert max(h["started_at_epoch"] for h in res.history) >= 2  # after restoring a checkpoint
    assert np.isfinite(res.best_metrics["val_macro_auroc"])


@pytest.mark.slow  # ~90 s: four short runs
def test_same_seed_gives_bit_identical_weights_with_one_and_with_two_workers(data10, tmp_path):
    import torch

    from train.loop import load_model
    from train.run import train

    def weights(name, workers):
        cfg = load_config("local", [f"train.storage={tmp_path}", "train.epochs=2",
                                    "train.cache_decoded=true", f"train.num_workers={workers}"]
                          + TINY_CONV)
        train(cfg, "teacher", data10, name, show_progress=False)
        last = sorted(p for p in (tmp_path / name).glob("checkpoint_*") if p.is_dir())[-1]
        return load_model(last / "model").state_dict()

    runs = {}
    for workers in (1, 2):
        a, b = weights(f"a{workers}", workers), weights(f"b{workers}", workers)
        assert all(torch.equal(a[k], b[k]) for k in a), workers
        runs[workers] = a
    assert not all(torch.equal(runs[1][k], runs[2][k]) for k in a)  # 2 workers: other steps


def test_evaluate_writes_report(teacher_run, data10, tmp_path):
    best = (teacher_run / "best_checkpoint.txt").read_text()
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", best, "--data", data10, "--split", "val",
                 "--out", str(out)]) == 0
    r = json.loads((out / "metrics.json").read_text())
    hist = json.loads((teacher_run / "history.json").read_text())
    # the same checkpoint on the same split gives the validation AUROC the run recorded
    rec = {h["epoch"]: h for h in hist}
    assert any(abs(h["val_macro_auroc"] - r["metrics"]["macro_auroc"]) < 1e-6
               for h in rec.values())
    assert set(r["groups"]) == {"age_group", "gender", "ethnicity"}
    assert "gap" in r["groups"]["gender"]
    for png in ("confusion.png", "curves.png"):
        assert (out / png).stat().st_size > 5000
    md = (out / "metrics.md").read_text()
    assert "| macro_auroc |" in md and "Pain frames only (PSPI 1-16" in md
    assert r["thresholds_from"] == "the training split" and set(r["thresholds"]) <= {
        "pspi_ge1", "pspi_ge2", "pspi_ge3"} and r["mode"] == "teacher"
    val = json.loads((teacher_run / "split.json").read_text())["val"]
    assert r["frames"] == 33 * len(val) and r["pain_only"]["frames"] == 30 * len(val)


def test_evaluate_reads_mode_and_split_from_a_copied_checkpoint(teacher_run, data10, tmp_path,
                                                                 capsys):
    import shutil

    best = Path((teacher_run / "best_checkpoint.txt").read_text())
    copy = tmp_path / "copied"
    shutil.copytree(best / "model", copy)  # outside its run folder
    split = json.loads((teacher_run / "split.json").read_text())
    assert main(["evaluate", "--checkpoint", str(copy), "--data", data10, "--mode", "student",
                 "--out", str(tmp_path / "e")]) == 0
    r = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert r["mode"] == "teacher" and r["split"] == "test"  # from the checkpoint, not --mode
    assert r["frames"] == 33 * len(split["test"])  # exactly the test identities
    (copy / "checkpoint.json").unlink()  # a bare model: nothing recorded
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(copy), "--data", data10, "--mode", "teacher",
                 "--out", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert "records no split" in err and "--split all" in err and err.count("\n") == 1


def test_student_refuses_a_teacher_of_another_split(teacher_run, data10, tmp_path, capsys):
    best = (teacher_run / "best_checkpoint.txt").read_text()
    rc = main(["train", "student", "--data", data10, "--teacher", best, "--name", "s",
               f"train.storage={tmp_path}", "train.epochs=1",
               "train.split=[0.5,0.3,0.2]"] + TINY)  # other fractions: another split
    err = capsys.readouterr().err
    assert rc == 2 and "was trained on another split" in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def ablation(data10, tmp_path_factory):
    """The default rows over 2 identity splits x 1 seed (8 runs), once for the tests below."""
    storage = tmp_path_factory.mktemp("abl")
    args = ["ablate", "--data", data10, "--seeds", "1", "--splits", "2", "--name", "abl",
            "--bootstrap", "200", f"train.storage={storage}", "train.epochs=1"] + TINY
    assert main(args) == 0
    return storage / "abl", args


@pytest.mark.slow
def test_ablation_over_splits_prints_intervals_and_the_detectable_effect(ablation):
    folder, _ = ablation
    s = json.loads((folder / "ablation.json").read_text())
    assert set(s["rows"]) == {"baseline", "au_queries", "au_queries_distill", "teacher"}
    for row in s["rows"].values():
        mean, _, n = row["pain_only"]["macro_auroc"]
        assert 0.0 <= mean <= 1.0 and n == 2
    assert s["failures"] == []
    md = (folder / "ablation.md").read_text()
    assert "0.96" in md and "+ AU queries + heatmap distillation" in md
    assert "Pain frames only (PSPI 1-16" in md and "All frames" in md
    assert "95% confidence intervals" in md and "detectable at 80% power" in md
    assert s["splits"] == 2 and [(r["split"], r["seed"]) for r in s["runs"]["baseline"]] == [
        (0, 0), (1, 0)]
    cfg = json.loads((folder / "au_queries_distill-split1-seed0" / "config.json").read_text())
    assert cfg["teacher"].startswith(str(folder / "teacher-split1-seed0"))  # its own split's
    assert cfg["config"]["train"]["model"]["au_queries"] is True
    base = json.loads((folder / "baseline-split0-seed0" / "config.json").read_text())
    assert base["teacher"] is None and base["config"]["train"]["model"]["au_queries"] is False
    b = s["bootstrap"]
    assert set(b["rows"]) == set(s["rows"]) and len(b["comparisons"]) == 3
    assert all(r["lo"] <= r["mean"] <= r["hi"] for r in b["rows"].values())
    splits = [json.loads((folder / f"baseline-split{j}-seed0" / "split.json")
                         .read_text())["test"] for j in (0, 1)]
    assert splits[0] != splits[1]  # two identity splits
    assert len(list((folder / "scored").glob("*.npz"))) == 8


@pytest.mark.slow
def test_ablation_resumes_and_trains_a_teacher_again_when_its_checkpoint_is_gone(ablation,
                                                                                capsys):
    import shutil

    folder, args = ablation
    s = json.loads((folder / "ablation.json").read_text())
    first = json.loads((folder / "reports" / "teacher-split1-seed0.json").read_text())
    student = json.loads((folder / "reports" / "au_queries_distill-split1-seed0.json")
                         .read_text())
    (folder / "ablation.json").unlink()
    capsys.readouterr()
    # --resume reads every finished run back (nothing trains) and gives the same table
    assert main(args + ["--resume"]) == 0
    assert capsys.readouterr().out.count("finished earlier") == 8
    again = json.loads((folder / "ablation.json").read_text())
    assert again["rows"] == s["rows"] and again["bootstrap"] == s["bootstrap"]
    for run in ("teacher-split1-seed0", "au_queries_distill-split1-seed0"):  # reports kept
        shutil.rmtree(folder / run)
    (folder / "reports" / "au_queries_distill-split1-seed0.json").unlink()
    assert main(args + ["--resume"]) == 0  # the student left needs its teacher again
    out = capsys.readouterr().out
    assert out.count("finished earlier") == 6 and "teacher on heatmaps: test macro" in out
    for run, before in (("teacher-split1-seed0", first),
                        ("au_queries_distill-split1-seed0", student)):
        again = json.loads((folder / "reports" / f"{run}.json").read_text())
        assert again["pain_only"] == before["pain_only"]  # the same seed, the same model
        # bit-identical only on one CPU capability: the record says which it was
        assert again["host"] == before["host"] and again["host"]["cpu_capability"]


def test_corrupt_png_fails_in_one_line_and_leaves_no_run(data10, tmp_path, capsys):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "bad"
    shutil.copytree(data10, bad)
    from pipelines.tasks import shard_name

    first = make_split(identity_table(path=data10), (0.7, 0.2, 0.1), load_config().seed)["train"][0]
    shard = bad / "frames" / shard_name(first)
    t = pq.read_table(shard)
    images = t.column("image").to_pylist()
    images[3] = images[3][:40]  # a truncated PNG
    t = t.set_column(t.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    pq.write_table(t, shard)
    ident = int(t.column("identity")[0].as_py())
    runs = tmp_path / "runs"
    rc = main(["train", "teacher", "--data", str(bad), "--name", "c", f"train.storage={runs}",
               "train.epochs=1", "train.max_failures=0"] + TINY)
    err = capsys.readouterr().err
    assert rc == 2
    assert f"corrupt image PNG in identity {ident}" in err and "Traceback" not in err
    assert not (runs / "c").exists()  # nothing to resume: no half run folder
