"""``pain3d report``: a static, self-contained HTML report of a dataset (gallery with filters,
PSPI and demographic plots, QA) and, when given, of training runs, an ablation and a sweep.

The folder holds ``index.html`` (Jinja2; styles, script and the gallery's data inline), the
figures (matplotlib PNGs), small JPEG copies of the shown frames and heatmaps, and the
Markdown card. It is written beside and renamed into place, so a failure leaves no report.
"""
from __future__ import annotations

import datetime
import shutil
import uuid
from pathlib import Path

from faces.au import EXTRA_AUS, PSPI_AUS, PSPI_MAX
from pipelines import guard, storage
from pipelines.card import card_into, light_frames
from pipelines.gallery import identity_entries, write_images
from pipelines.manifest import GROUP_COLS
from pipelines.report_train import (ablation_section, check_inputs, run_section,
                                    sweep_section)

DEFAULT_IDENTITIES = 48  # in the gallery: ~0.5 MB of JPEGs each
MAX_IDENTITIES = 2000
FRAME_SIZES = (64, 512)


def default_out(dataset: str) -> str:
    if dataset.startswith("s3://"):
        raise ValueError("for an s3:// dataset, give --out: a local folder for the report")
    return str(Path(dataset) / "report")


def _check(identities: int, frame_size: int) -> None:
    if not 1 <= identities <= MAX_IDENTITIES:
        raise ValueError(f"--identities must be between 1 and {MAX_IDENTITIES}, got "
                         f"{identities}")
    if not FRAME_SIZES[0] <= frame_size <= FRAME_SIZES[1]:
        raise ValueError(f"--frame-size must be between {FRAME_SIZES[0]} and "
                         f"{FRAME_SIZES[1]} pixels, got {frame_size}")


def _gallery(light, entries: list[dict]) -> dict:
    names = light.column_names
    values = {g: sorted({str(v) for v in light.column(g).to_pylist() if v is not None})
              for g in GROUP_COLS if g in names}
    return {"identities": entries, "group_cols": list(values), "group_values": values,
            "aus": [a for a in (*PSPI_AUS, *EXTRA_AUS) if a in names]}


def _render(folder: Path, **context) -> Path:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("pipelines", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined)
    page = folder / "index.html"
    page.write_text(env.get_template("report.html.j2").render(**context), encoding="utf-8")
    return page


def _build(dataset: str, light, folder: Path, runs, ablation, sweep, identities: int,
           frame_size: int, progress) -> None:
    card = card_into(dataset, light, folder)
    ids = sorted({int(i) for i in light.column("identity").to_pylist()})[:identities]
    entries = identity_entries(light, ids)
    if progress is None:
        write_images(dataset, entries, folder, frame_size)
    else:
        with progress(total=len(entries)) as bar:
            write_images(dataset, entries, folder, frame_size, bar.update)
    _render(folder, dataset=dataset, card=card, gallery=_gallery(light, entries),
            pspi_max=PSPI_MAX, written=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            runs=[run_section(r, folder, i) for i, r in enumerate(runs)],
            ablation=ablation_section(ablation) if ablation else None,
            sweep=sweep_section(sweep, folder) if sweep else None)


def write_report(dataset: str, out: str | None = None, runs: list[str] = (),
                 ablation: str | None = None, sweep: str | None = None,
                 identities: int = DEFAULT_IDENTITIES, frame_size: int = 192,
                 progress=None) -> Path:
    """Writes the report folder ``out`` (default DATASET/report) and returns its index.html.
    ``progress``: makes a progress bar for a total (e.g. a partial of tqdm), advanced per
    gallery identity."""
    _check(identities, frame_size)
    out = out or default_out(dataset)
    inputs = [dataset, *runs, *(p for p in (ablation, sweep) if p)]
    # a report is always rebuilt, but only over a folder pain3d wrote
    guard.check_output_folder(out, inputs, overwrite=True, kind="report", inside_ok=True)
    check_inputs(list(runs), ablation, sweep)
    light = light_frames(dataset)  # before any folder exists: a missing dataset makes none
    if light.num_rows == 0:
        raise ValueError(f"{dataset} holds no frames")
    with guard.whole_folder(out, "report", inputs) as tmp:
        _build(dataset, light, tmp, list(runs), ablation, sweep, identities, frame_size, progress)
    return Path(out) / "index.html"
