"""`pain3d crossval`: seeded subject-grouped folds, class weights for imbalance, fine-tuning from
a checkpoint, and (slow) the whole protocol on a UNBC-layout import: folds disjoint and covering,
one table row per fold, --init from a pain3d-trained checkpoint, --resume training nothing."""
import json

import numpy as np
import pytest
import torch

from cluster.cli import main
from tests.conftest import TINY_TRAIN
from tests.unbc_fixture import build_unbc_tree
from train.crossval import (COLUMNS, fold_split, make_folds, protocol_differences,
                            read_folds_file)
from train.crossval_report import markdown
from train.losses import class_weights


def test_folds_are_seeded_disjoint_and_cover_every_subject():
    subjects = list(range(40, 65))  # UNBC: 25 subjects
    folds = make_folds(subjects, 5, seed=0)
    assert [len(f) for f in folds] == [5] * 5
    flat = [s for f in folds for s in f]
    assert sorted(flat) == subjects and len(set(flat)) == 25
    assert make_folds(subjects, 5, seed=0) == folds and make_folds(subjects, 5, seed=1) != folds
    for k in range(5):
        sp = fold_split(folds, k, 0.2, seed=0)
        assert sp["test"] == folds[k] and len(sp["val"]) == 4 and len(sp["train"]) == 16
        assert not set(sp["train"]) & set(sp["val"]) and not set(sp["test"]) & set(sp["train"])
        assert sorted(sp["train"] + sp["val"] + sp["test"]) == subjects
    with pytest.raises(ValueError, match="--folds 30 needs between 2 and 25"):
        make_folds(subjects, 30, 0)


def test_folds_run_in_parallel_as_the_cluster_has_room():
    from cluster.config import load_config
    from train.crossval import concurrency

    cfg = load_config("local", layers=["crossval"])  # 2 workers x 0.5 CPU, decoding 1 CPU
    assert concurrency(cfg, {"CPU": 2}) == 1 and concurrency(cfg, {"CPU": 16}) == 7
    gpu = load_config("local", ["train.use_gpu=true"], layers=["crossval"])
    assert concurrency(gpu, {"CPU": 64, "GPU": 8}) == 4  # 2 GPUs per run
    fixed = load_config("local", ["crossval.concurrent=3"], layers=["crossval"])
    assert concurrency(fixed, {"CPU": 2}) == 3


def test_class_weights_balance_the_levels():
    y = np.array([0] * 800 + [1] * 100 + [3] * 80 + [9] * 20)
    w = np.asarray(class_weights(y, "inverse"))
    per_level = np.bincount(y, minlength=17) * w  # each present level's total weight
    present = per_level[per_level > 0]
    np.testing.assert_allclose(present, present[0])  # inverse: equal total per level
    assert w[2] == 0 and np.isclose(w[y].mean(), 1)  # absent level: 0; mean weight per frame 1
    s = np.asarray(class_weights(y, "sqrt_inverse"))
    np.testing.assert_allclose(s[9] / s[0], np.sqrt(800 / 20))
    assert np.isclose(s[y].mean(), 1) and class_weights(y, "none") is None
    with pytest.raises(ValueError, match="unknown train.class_weights"):
        class_weights(y, "balanced")


def test_weighted_cross_entropy_changes_the_loss():
    from train.losses import LossWeights, vitpain_loss

    torch.manual_seed(0)
    out = {"pspi_logits": torch.randn(8, 17), "au": torch.zeros(8, 6), "cls": torch.zeros(8, 4)}
    y = torch.tensor([0, 0, 0, 0, 0, 0, 3, 9])
    plain, _ = vitpain_loss(out, y, torch.zeros(8, 6), LossWeights())
    w = torch.tensor(class_weights(y.numpy(), "inverse"), dtype=torch.float32)
    weighted, _ = vitpain_loss(out, y, torch.zeros(8, 6), LossWeights(), ce_weight=w)
    ce = torch.nn.functional.cross_entropy(out["pspi_logits"], y, reduction="none")
    expect = (ce * w[y]).sum() / w[y].sum()
    assert torch.isclose(weighted, expect) and not torch.isclose(weighted, plain)


def test_init_starts_every_fold_from_the_checkpoint(tmp_path):
    from cluster.config import load_config
    from train import steps
    from train.loop import load_model, save_model
    from train.model import ViTPain

    cfg = load_config("local", TINY_TRAIN).train
    torch.manual_seed(5)
    pretrained = ViTPain(cfg.model)
    save_model(pretrained, tmp_path / "ckpt")
    init = load_model(tmp_path / "ckpt").state_dict()
    w = steps.build(cfg, "student", None, "cpu", 0, 1, init=init)
    fresh = steps.build(cfg, "student", None, "cpu", 0, 1)
    x = torch.randn(2, 3, 32, 32)
    pretrained.eval(), w.model.eval(), fresh.model.eval()
    assert torch.equal(w.model(x)["pspi_logits"], pretrained(x)["pspi_logits"])
    assert not torch.equal(fresh.model(x)["pspi_logits"], pretrained(x)["pspi_logits"])


def test_table_names_the_protocol_differences(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"source": "unbc-mcmaster",
                                                        "counts": {"frames": 48_398}}))
    assert protocol_differences(str(tmp_path), 5, None) == []
    diff = protocol_differences(str(tmp_path), 3, 1000)
    assert diff == ["3 folds, not 5", "train.max_frames=1000 subsamples the frames"]
    fold = {"fold": 0, "test_subjects": [1], "frames": 9,
            "metrics": {"auroc_pspi_ge3": 0.7, "f1_pspi_ge3": 0.5}}
    cell = {"mean": 0.7, "std": float("nan"), "n": 1}
    s = {"folds": [[1]], "data": "d", "init": None, "backbone": "resnet18", "epochs": 1,
         "class_weights": "sqrt_inverse", "protocol_differences": diff, "per_fold": [fold],
         "mean_std": {k: cell for k in COLUMNS}}
    md = markdown(s, "cv")
    assert "AUROC ≥1" in md and "F1 ≥1" in md
    assert "## Differences from the authors' code" in md
    assert "calibrated on each fold's validation subjects; the authors grid-search" in md
    assert "**This run is not comparable to them**: 3 folds, not 5" in md
    # one fold's value says n = 1, and a start from neither --init nor a file is called random
    assert "| ours: cv | a random initialisation of resnet18 (no --init, no pretrained_file) | " \
        "0.700 (n = 1) |" in md and "own weights" not in md
    s["pretrained_file"] = "/w/resnet18.safetensors"
    assert "| ours: cv | resnet18 weights from /w/resnet18.safetensors (no --init) |" in \
        markdown(s, "cv")


@pytest.mark.slow  # ~4 min: two 3-fold cross-validations of tiny models
def test_crossval_on_a_unbc_layout_import(data10, ray_local, tiny_teacher, tmp_path, capsys):
    root, runs, data = tmp_path / "archive", tmp_path / "runs", tmp_path / "unbc"
    build_unbc_tree(data10, root, subjects=6)
    assert main(["import", "unbc", str(root), "--out", str(data), "--size", "48"]) == 0
    tiny = TINY_TRAIN + [f"train.storage={runs}", "train.epochs=1", "train.num_workers=1"]
    # the authors' options compose with it: neutral reference (the import links each frame to
    # its sequence's first frame, label-free), both heads, two-shot evaluation
    options = ["train.model.neutral_reference=true", "train.model.head=both",
               "train.eval.neutral_shots=2"]
    assert main(["crossval", "--data", str(data), "--folds", "3", "--name", "scratch"]
                + tiny + options) == 0
    printed = capsys.readouterr()  # quiet without -v: no Tune tables, bars on stderr
    for noise in ("Configuration for experiment", "View detailed results", "Trial status"):
        assert noise not in printed.out + printed.err, noise
    assert "folds:" in printed.err and "epochs:" in printed.err
    cv = runs / "scratch"
    s = json.loads((cv / "crossval.json").read_text())
    subjects = [s for f in s["folds"] for s in f]
    assert sorted(subjects) == list(range(101, 107)) and len(set(subjects)) == 6
    assert [f["test_subjects"] for f in s["per_fold"]] == s["folds"]
    for f in s["per_fold"]:  # each fold trained without its test subjects
        split = json.loads((cv / f"fold-{f['fold']}" / "split.json").read_text())
        assert not set(split["train"] + split["val"]) & set(f["test_subjects"])
        assert np.isfinite(f["metrics"]["auroc_pspi_ge2"]) and "f1_pspi_ge3" in f["metrics"]
        assert "auroc_pspi_ge1" in f["metrics"] and "f1_pspi_ge1" in f["metrics"]
        test = json.loads((cv / f"fold-{f['fold']}" / "eval-test" / "metrics.json").read_text())
        assert test["thresholds_from"] == "the validation split"
    assert s["select_metric"] == "val_auroc_pspi_ge3"
    ci = s["ci_auroc_pspi_ge3"]  # the mean over folds, with an interval over test subjects
    per_fold = [f["metrics"]["auroc_pspi_ge3"] for f in s["per_fold"]]
    assert ci["mean"] == pytest.approx(np.nanmean(per_fold), abs=1e-6)
    assert ci["lo"] <= ci["mean"] <= ci["hi"]
    md = (cv / "crossval.md").read_text()
    assert "95% CI" in md
    assert sum(line.startswith(f"| {k} |") for k in range(3) for line in md.splitlines()) == 3
    assert "class imbalance: PSPI cross-entropy weights `sqrt_inverse`" in md
    cfg = json.loads((cv / "fold-0" / "config.json").read_text())
    assert len(cfg["class_weights"]) == 17
    assert cfg["config"]["train"]["model"]["neutral_reference"] is True
    assert all("reg_acc" in f["metrics"] for f in s["per_fold"])
    # --resume of a finished cross-validation trains nothing
    stamps = {p: p.stat().st_mtime_ns for p in cv.rglob("*") if "checkpoint_" in str(p)}
    capsys.readouterr()
    assert main(["crossval", "--name", "scratch", "--resume", f"train.storage={runs}"]) == 0
    assert "3 of 3 folds already finished: not retrained" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in cv.rglob("*") if "checkpoint_" in str(p)} == stamps
    # fine-tuning from a pain3d-trained checkpoint; its row joins the same Table 3
    ckpt = tiny_teacher
    assert main(["crossval", "--data", str(data), "--folds", "3", "--name", "pretrained",
                 "--init", ckpt] + tiny) == 0
    md = (runs / "pretrained" / "crossval.md").read_text()
    assert f"| ours: pretrained | checkpoint {ckpt} |" in md and "| ours: scratch |" in md
    assert json.loads((runs / "pretrained" / "fold-1" / "config.json").read_text())["init"] == ckpt


def test_folds_file_json_or_csv_must_cover_the_subjects(tmp_path, monkeypatch):
    import train.crossval as cv

    subjects = [101, 102, 103, 104]
    (tmp_path / "f.json").write_text(json.dumps([[104, 101], [102, 103]]))
    assert read_folds_file(str(tmp_path / "f.json"), "d", subjects) == [[101, 104], [102, 103]]
    (tmp_path / "f.csv").write_text("identity,fold\n101,0\n102,1\n103,2\n104,0\n")
    assert read_folds_file(str(tmp_path / "f.csv"), "d", subjects) == [[101, 104], [102], [103]]
    monkeypatch.setattr(cv, "_subject_names", lambda data: {"101-tv101": 101, "102-tv102": 102})
    (tmp_path / "s.csv").write_text("subject,fold\n101-tv101,0\n102-tv102,1\n")
    assert read_folds_file(str(tmp_path / "s.csv"), "d", [101, 102]) == [[101], [102]]
    with pytest.raises(ValueError, match="does not cover d's subjects exactly: 1 missing"):
        read_folds_file(str(tmp_path / "f.json"), "d", subjects + [105])
    (tmp_path / "dup.json").write_text(json.dumps([[101, 102], [102, 103, 104]]))
    with pytest.raises(ValueError, match="each subject in one"):
        read_folds_file(str(tmp_path / "dup.json"), "d", subjects)


def test_unbc_references_read_no_label():
    from pipelines.unbc import _link_neutrals

    rows = {"sample_id": ["a1", "a2", "b1", "b2", "b3"], "sequence": ["a", "a", "b", "b", "b"]}
    _link_neutrals(rows)  # no "pspi" (nor any label) in the rows: none can be read
    assert rows["neutral_sample_id"] == ["a1", "a1", "b1", "b1", "b1"]


def test_the_authors_sampler_and_augmentations():
    from cluster.config import load_config
    from train.losses import pain_x2_weights
    from train.steps import augment

    y = np.array([0] * 60 + [1] * 30 + [4] * 10)
    w = np.asarray(pain_x2_weights(y))
    assert w[1] == w[4] == pytest.approx(2 * w[0]) and np.isclose(w[y].mean(), 1)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(400, 3, 16, 16)
    ax, ah, an = augment(x, x.clone(), gen, jitter=False, n=x.clone(), style="authors")
    assert torch.equal(ax, ah) and torch.equal(ax, an)  # paired frames turn and flip alike
    assert ax.shape == x.shape and not torch.equal(ax, x)
    jx, _, _ = augment(x, None, torch.Generator().manual_seed(1), jitter=True, style="authors")
    from train.data import MEAN, STD

    pixels = jx * torch.as_tensor(STD) + torch.as_tensor(MEAN)  # the pixels stay in [0, 1]
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and not torch.allclose(jx, ax)
    assert jx.min() < 0  # normalised values are not clamped to [0, 1] (they were)
    cfg = load_config("local", layers=["crossval-authors"])
    assert (cfg.train.sampling, cfg.train.augment_style, cfg.crossval.select_metric) == (
        "pain_x2", "authors", "val_macro_auroc")
    s = {"select_metric": "val_macro_auroc", "sampling": "pain_x2", "class_weights": "none",
         "augment": True, "augment_style": "authors", "backbone": "resnet18", "init": None}
    from train.crossval_report import authors_differences

    diffs = authors_differences(s)
    assert not any(d.startswith(("Imbalance", "Augmentation")) for d in diffs)
    assert diffs[0].startswith("Best epoch picked by `val_macro_auroc` (as the authors")
