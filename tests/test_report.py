"""pain3d report: the HTML folder (gallery data, frame copies, plots, training sections), its
bad inputs, and the Hugging Face `datasets` view of the frames table."""
import csv
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cluster.cli import main


def gallery_json(index: Path) -> dict:
    html = index.read_text()
    m = re.search(r'<script id="gallery-data" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def frames_table(data: str) -> pa.Table:
    return pq.read_table(sorted(Path(data, "frames").glob("*.parquet")),
                         columns=["sample_id", "identity", "pspi", "AU4", "AU43", "gender",
                                  "heatmap"])


@pytest.fixture(scope="module")
def report10(data10, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "r"
    assert main(["report", data10, "--out", str(out), "--identities", "6"]) == 0
    return out


def test_gallery_data_matches_the_frames_table(report10, data10):
    g = gallery_json(report10 / "index.html")
    t = frames_table(data10).to_pylist()
    assert [e["identity"] for e in g["identities"]] == list(range(6))  # the first six
    by_id = {r["sample_id"]: r for r in t}
    for e in g["identities"]:
        assert len(e["frames"]) == 33 and e["total_frames"] == 33
        for f in e["frames"]:
            row = by_id[f["id"]]
            assert f["pspi"] == row["pspi"] and row["identity"] == e["identity"]
            au = dict(f["aus"])
            assert au.get("AU4", 0) == pytest.approx(row["AU4"]) and \
                au.get("AU43", 0) == pytest.approx(row["AU43"])
            assert f["heat"] == (row["heatmap"] is not None)
            assert (report10 / "frames" / f["file"]).is_file()
            assert (report10 / "heatmaps" / f["file"]).is_file() == f["heat"]
        assert e["peak_pspi"] == max(r["pspi"] for r in t if r["identity"] == e["identity"])
        assert e["groups"]["gender"] == by_id[e["frames"][0]["id"]]["gender"]
    assert len(list((report10 / "frames").iterdir())) == 6 * 33


def test_dataset_section_counts_and_plots(report10, data10):
    html = " ".join((report10 / "index.html").read_text().split())
    pspi = np.asarray(frames_table(data10).column("pspi"))
    row = "".join(f"<td>{n}</td>" for n in np.bincount(pspi, minlength=17))
    assert f"<tr><td>frames</td>{row}</tr>" in html
    assert "10 identities, 330 frames, 300 heatmaps" in html
    for png in ("pspi_histogram.png", "demographics.png"):
        im = np.asarray(Image.open(report10 / png).convert("L"), float)
        assert im.shape[1] > 300 and im.std() > 10
        assert f'src="{png}"' in html
    assert "| frames | " + " | ".join(map(str, np.bincount(pspi, minlength=17))) in \
        (report10 / "card.md").read_text()


def test_frame_sampling_and_qa_readings():
    from pipelines.gallery import identity_entries, pick_frames

    rows = [{"sample_id": f"s{i}", "pspi": i % 17} for i in range(1000)]
    picked = pick_frames(rows, 48)
    assert len(picked) == 48 and picked[0]["pspi"] == 0 and picked[-1]["pspi"] == 16
    assert len({r["sample_id"] for r in picked}) == 48
    t = pa.table({"sample_id": ["a", "b"], "identity": [7, 7], "expression": [0, 1],
                  "view": [1, 1], "yaw_deg": [0.0, 0.0], "pspi": [0, 5], "AU4": [0.0, 3.0],
                  "AU43": [0.0, 2.0], "gender": ["man", "man"], "has_heatmap": [False, True],
                  "qa_face_found": [True, False], "qa_pass": [True, False],
                  "qa_AU4": [0.01, None]})
    (e,) = identity_entries(t, [7, 8])  # 8 is absent: no entry
    assert e["thumb"] == e["frames"][1]["file"] and e["peak_pspi"] == 5
    assert e["frames"][1]["aus"] == [["AU4", 3.0], ["AU43", 2.0]]  # the AUs' own order
    assert dict(e["frames"][1]["qa"]) == {"face_found": False, "pass": False}
    assert dict(e["frames"][0]["qa"])["AU4"] == pytest.approx(0.01)


def _run_folder(root: Path) -> Path:
    run = root / "student"
    (run / "eval-test").mkdir(parents=True)
    history = [{"epoch": e, "train_loss": 3.0 - e, "val_macro_auroc": a, "val_acc": 0.2,
                "val_acc_pm1": 0.5} for e, a in enumerate([0.61, 0.73, 0.70], 1)]
    (run / "history.json").write_text(json.dumps(history))
    (run / "config.json").write_text(json.dumps({"mode": "student", "teacher": "t/ckpt"}))
    cm = np.zeros((17, 17), int)
    cm[3, 3], cm[5, 4] = 9, 2
    metrics = {"split": "test", "frames": 11,
               "metrics": {"macro_auroc": 0.7312, "acc": 0.25, "acc_pm1": 0.5, "acc_pm2": 0.75,
                           "mae_argmax": 1.5},
               "pain_only": {"frames": 8, "macro_auroc": 0.6543},
               "groups": {"gender": {"woman": {"macro_auroc": 0.8123, "acc": 0.3},
                                     "man": {"macro_auroc": 0.6012, "acc": 0.2}}},
               "confusion": cm.tolist()}
    (run / "eval-test" / "metrics.json").write_text(json.dumps(metrics))
    return run


def _sweep_folder(root: Path) -> Path:
    sw = root / "sweep"
    sw.mkdir()
    rows = [{"trial": "t2", "kl": 0.3, "paper_weights": False, "val_macro_auroc": 0.81,
             "val_acc": 0.3, "val_acc_pm1": 0.6, "val_mae": 1.2, "epochs": 4,
             "status": "completed"},
            {"trial": "t1", "kl": 0.1, "paper_weights": True, "val_macro_auroc": 0.77,
             "val_acc": 0.2, "val_acc_pm1": 0.5, "val_mae": 1.4, "epochs": 2,
             "status": "stopped early (ASHA)"}]
    with open(sw / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (sw / "final.json").write_text(json.dumps({"seeds": 2, "rows": {
        "best": {"macro_auroc": [0.8, 0.01, 2], "acc": [0.3, 0.02, 2]}}}))
    return sw


def test_training_sections(data10, tmp_path):
    from train.ablate import ROWS, summarise

    run, sweep = _run_folder(tmp_path), _sweep_folder(tmp_path)
    reports = [{"pain_only": {"macro_auroc": a, "acc": 0.2, "acc_pm1": 0.5, "acc_pm2": 0.7},
                "all": {"macro_auroc": a + 0.02, "acc": 0.2, "acc_pm1": 0.5, "acc_pm2": 0.7}}
               for a in (0.70, 0.74)]
    abl = tmp_path / "abl"
    abl.mkdir()
    rows = summarise({"baseline": reports, "au_queries": reports[::-1]})
    (abl / "ablation.json").write_text(json.dumps(  # sorted keys, as storage writes it
        {"seeds": 2, "rows": rows, "failures": []}, sort_keys=True))
    out = tmp_path / "r"
    assert main(["report", data10, "--out", str(out), "--identities", "2", "--run", str(run),
                 "--ablation", str(abl), "--sweep", str(sweep)]) == 0
    html = " ".join((out / "index.html").read_text().split())
    assert "Best validation epoch 2: macro AUROC 0.730" in html  # the best, not the last
    assert "<td>macro AUROC</td><td>0.731</td><td>0.654</td>" in html
    assert "<tr><td>woman</td><td>0.812</td><td>0.300</td>" in html
    for png in ("run0-curves.png", "run0-eval-test-confusion.png"):
        assert (out / png).is_file() and f'src="{png}"' in html
    assert f"<td>{ROWS['baseline'].label}</td><td>2</td><td>0.720 ± 0.028</td>" in html
    assert html.index(ROWS["baseline"].label) < html.index(ROWS["au_queries"].label)
    assert html.index("t2") < html.index("t1 (paper&#39;s weights)")  # best first
    assert "stopped early (ASHA)" in html
    assert "<td>best</td><td>0.800 ± 0.010</td><td>0.300 ± 0.020</td>" in html
    assert len(gallery_json(out / "index.html")["identities"]) == 2


@pytest.mark.parametrize("extra, says", [
    (["--run", "{tmp}"], "not a finished pain3d training run"),
    (["--ablation", "{tmp}"], "holds no ablation.json"),
    (["--sweep", "{tmp}"], "holds no results.csv"),
    (["--identities", "0"], "--identities must be between 1"),
    (["--frame-size", "9"], "--frame-size must be between"),
])
def test_bad_report_inputs_say_one_sentence(data10, tmp_path, capsys, extra, says):
    out = tmp_path / "r"
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(["report", data10, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
    assert not out.exists() and not list(tmp_path.glob(".r.tmp-*"))


def test_failure_midway_leaves_no_report(data10, tmp_path, monkeypatch):
    import pipelines.report as report

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_images", boom)
    out = tmp_path / "r"
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(data10, str(out))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_frames_table_loads_with_hugging_face_datasets(data10, tmp_path, monkeypatch):
    """As the README shows: the Parquet shards through `datasets`, images decoded by Image()."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the parquet builder is local code
    from datasets import Image as HFImage
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=f"{data10}/frames/*.parquet", split="train",
                      cache_dir=str(tmp_path / "hf"))
    for col in ("image", "heatmap", "mask"):
        ds = ds.cast_column(col, HFImage())
    t = frames_table(data10)
    assert ds.num_rows == t.num_rows == 330
    i = t.column("sample_id").to_pylist().index("000003_04_1")
    row = ds[i]
    assert row["sample_id"] == "000003_04_1" and row["pspi"] == t.column("pspi")[i].as_py()
    assert row["image"].size == (48, 48) and row["image"].mode == "RGB"
    assert row["mask"].size == (48, 48)
    assert row["heatmap"] is not None and np.asarray(row["heatmap"]).max() > 0
    neutral = ds[t.column("sample_id").to_pylist().index("000003_00_1")]
    assert neutral["pspi"] == 0 and neutral["heatmap"] is None
