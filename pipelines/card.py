"""Dataset card, part of the HTML report (``pipelines/report.py``): card.md with a PSPI
histogram (as the paper's Fig. 4), a demographic table (as its Table 1) and a preview grid,
all computed from the dataset itself."""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from PIL import Image, ImageDraw

from faces.au import PSPI_MAX
from pipelines import storage
from pipelines.layout3dpain import load_frames
from pipelines.manifest import GROUP_COLS
from pipelines.qa_report import card_lines, qa_png, qa_summary

STAT_COLS = ["sample_id", "identity", "expression", "view", "pspi"] + list(GROUP_COLS)


def _hist_png(frames: np.ndarray, heatmaps: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(PSPI_MAX + 1)
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=120)
    ax.bar(x - 0.2, frames, width=0.4, label="frames", color="#4c72b0")
    ax.bar(x + 0.2, heatmaps, width=0.4, label="heatmaps", color="#dd8452")
    ax.set_xticks(x)
    ax.set_xlabel("PSPI")
    ax.set_ylabel("count")
    ax.set_title("Frames and heatmaps per PSPI level")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _demo_png(groups: dict[str, Counter], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=120,
                             gridspec_kw={"width_ratios": [2, 2, 6]})
    for ax, col in zip(axes, GROUP_COLS):
        c = groups[col]
        keys = sorted(c)
        ax.bar(range(len(keys)), [c[k] for k in keys], color="#55a868")
        ax.set_xticks(range(len(keys)), keys, rotation=30, ha="right")
        ax.set_title(col.replace("_", " "))
        ax.yaxis.get_major_locator().set_params(integer=True)  # counts of identities
        ax.spines[["top", "right"]].set_visible(False)
        for i, k in enumerate(keys):
            ax.text(i, c[k], str(c[k]), ha="center", va="bottom", fontsize=8)
    axes[0].set_ylabel("identities")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _preview_png(table, ids: list[int], path: Path, tile: int = 160) -> None:
    cols = ["neutral", "low", "mid", "high", "heatmap (high)"]
    grid = Image.new("RGB", (tile * len(cols), (tile + 18) * len(ids)), (250, 250, 250))
    d = ImageDraw.Draw(grid)
    views = np.asarray(table.column("view"))
    frontal = int(np.median(np.unique(views)))
    for r, ident in enumerate(ids):
        sel = table.filter(pc.and_(pc.equal(table.column("identity"), ident),
                                   pc.equal(table.column("view"), frontal)))
        rows = sorted(sel.to_pylist(), key=lambda x: (x["pspi"], x["expression"]))
        pain = [x for x in rows if x["expression"] > 0]
        neutral = [x for x in rows if x["expression"] == 0]
        if not pain or not neutral:
            continue
        picks = [neutral[0], pain[0], pain[len(pain) // 2], pain[-1]]
        images = [x["image"] for x in picks] + [pain[-1]["heatmap"]]
        labels = ["PSPI 0"] + [f"PSPI {x['pspi']}" for x in picks[1:]] + [f"PSPI {pain[-1]['pspi']}"]
        for c, (blob, label) in enumerate(zip(images, labels)):
            if blob is None:
                continue
            im = Image.open(io.BytesIO(blob)).convert("RGB").resize((tile, tile))
            grid.paste(im, (c * tile, r * (tile + 18)))
            d.text((c * tile + 4, r * (tile + 18) + tile + 3), f"id {ident} {label}",
                   fill=(30, 30, 30))
    for c, name in enumerate(cols):
        d.text((c * tile + 4, 2), name, fill=(255, 255, 0))
    grid.save(path)


BLOBS = ("image", "heatmap", "mask")


def light_frames(dataset: str):
    """The frames table without its image columns (statistics, QA, gallery metadata), plus
    ``has_heatmap``; the heatmap bytes are dropped batch by batch as they are read."""
    from pipelines.layout3dpain import frames_loc, is_3dpain_layout
    from pipelines.manifest import frames_dataset, read_frames

    if is_3dpain_layout(dataset):  # its reader builds every column anyway
        t = load_frames(dataset)
        return t.drop(list(BLOBS)).append_column("has_heatmap", t.column("heatmap").is_valid())
    loc = frames_loc(dataset)  # a missing dataset: one sentence
    ds = frames_dataset(loc)
    cols = {c: pc.field(c) for c in ds.schema.names if c not in BLOBS}
    cols["has_heatmap"] = pc.is_valid(pc.field("heatmap"))
    return read_frames(loc, cols, ds)


def _with_images(dataset: str, ids: list[int]):
    """The frames of ``ids`` with their image and heatmap bytes."""
    import pyarrow as pa

    from pipelines.layout3dpain import iter_frames

    return pa.Table.from_batches(list(iter_frames(dataset, ids))).drop(["mask"])


def _manifest(dataset: str) -> dict:
    if dataset.startswith("s3://"):
        return storage.read_json(storage.resolve(dataset), "manifest.json") or {}
    p = Path(dataset) / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {}


def card_into(dataset: str, table, folder: Path, preview_identities: int = 6) -> dict:
    """Writes card.md and its figures (PSPI histogram, demographics, preview, QA) into
    ``folder``; ``table``: the frames without images (``light_frames``). Returns the counts."""
    stats = table.select(STAT_COLS).to_pylist()
    pspi = np.array([s["pspi"] for s in stats])
    has_heat = np.asarray(table.column("has_heatmap"))
    frames = np.bincount(pspi, minlength=PSPI_MAX + 1)
    heat = np.bincount(pspi[has_heat], minlength=PSPI_MAX + 1)
    first = {}
    for s in stats:
        first.setdefault(s["identity"], s)
    groups = {c: Counter(s[c] for s in first.values()) for c in GROUP_COLS}
    _hist_png(frames, heat, folder / "pspi_histogram.png")
    _demo_png(groups, folder / "demographics.png")
    ids = sorted(first)[:preview_identities]
    _preview_png(_with_images(dataset, ids), ids, folder / "preview.png")
    manifest = _manifest(dataset)
    lines = [f"# Dataset card: {dataset}", "",
             f"- identities: {len(first)}", f"- frames: {len(stats)}",
             f"- heatmaps: {int(has_heat.sum())}",
             f"- views per expression: {len(set(s['view'] for s in stats))}"]
    if manifest:
        lines += [f"- config hash: `{manifest.get('config_hash', '?')}`",
                  f"- code version: `{manifest.get('code_version', '?')}`"]
    lines += ["", "## PSPI distribution (cf. the paper's Fig. 4)", "",
              "![PSPI histogram](pspi_histogram.png)", "",
              "| PSPI | " + " | ".join(map(str, range(PSPI_MAX + 1))) + " |",
              "|---" * (PSPI_MAX + 2) + "|",
              "| frames | " + " | ".join(map(str, frames)) + " |",
              "| heatmaps | " + " | ".join(map(str, heat)) + " |", "",
              "## Demographics (identities; cf. the paper's Table 1)", "",
              "![demographics](demographics.png)", ""]
    for col in GROUP_COLS:
        lines += [f"| {col} | identities |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(groups[col].items())] + [""]
    lines += ["## Preview", "", "![preview](preview.png)", ""]
    qa = qa_summary(table)
    if qa is not None:
        qa_png(table, folder / "qa.png")
        lines += card_lines(qa)
    (folder / "card.md").write_text("\n".join(lines))
    return {"identities": len(first), "frames": len(stats), "heatmaps": int(has_heat.sum()),
            "pspi_frames": frames.tolist(), "pspi_heatmaps": heat.tolist(),
            "groups": {c: dict(sorted(groups[c].items())) for c in GROUP_COLS},
            "manifest": {k: manifest.get(k) for k in ("config_hash", "code_version")},
            "qa": qa}
