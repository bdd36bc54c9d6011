"""``pain3d demo``: the whole loop on the built-in models, in one command and one folder.

    generate -> teacher -> distilled student -> evaluate (both, test split) -> HTML report

OUT/data is the dataset, OUT/runs the two training runs (each evaluated into
``<run>/eval-test``), OUT/report the report. ``OUT/demo.json`` records the finished steps
(written atomically after each), so a re-run skips them and an interrupted step resumes as
its own command would (generation keeps finished identities, training its checkpoints).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cluster.config import ConfigError
from cluster.options import config_of
from pipelines import guard, storage

STEPS = ("generate", "teacher", "student", "evaluate", "report")
STATE = "demo.json"
LAYER = "demo"  # configs/demo.yaml, over the preset
MIN_IDENTITIES, MAX_IDENTITIES = 10, 500  # 10: every split part keeps an identity


@dataclass
class Demo:
    out: Path
    identities: int

    @property
    def data(self) -> str:
        return str(self.out / "data")

    @property
    def runs(self) -> str:
        return str(self.out / "runs")

    def run(self, mode: str) -> str:
        return str(self.out / "runs" / mode)


def demo_config(args):
    """The preset (local unless --config) with configs/demo.yaml layered over it, the
    demo's folders, then the user's key=value overrides."""
    if not MIN_IDENTITIES <= args.identities <= MAX_IDENTITIES:
        raise ConfigError(f"--identities must be between {MIN_IDENTITIES} and "
                          f"{MAX_IDENTITIES} for the demo, got {args.identities}")
    if "://" in args.out:
        raise ConfigError(f"--out {args.out}: the demo writes a local folder; use pain3d "
                          "generate/train for cloud storage")
    d = Demo(Path(args.out).resolve(), args.identities)
    flags = [f"generate.identities={d.identities}", "generate.start=0",
             f"generate.out={d.data}", f"train.storage={d.runs}"]
    return d, config_of(args, flags, layers=[LAYER])


def _state(d: Demo, cfg) -> dict:
    """demo.json as left by an earlier run of the same demo; a fresh one otherwise. Refuses a
    folder that is not a demo, or a demo made with other settings."""
    from pipelines.generate import content_hash

    key = {"identities": d.identities, "data": content_hash(cfg), "train": _train_hash(cfg)}
    if (d.out / STATE).is_file():
        state = json.loads((d.out / STATE).read_text())
        if state.get("key") != key:
            raise ConfigError(f"{d.out} holds a demo made with other settings ("
                              f"{state.get('key', {}).get('identities')} identities or another "
                              "config); give another --out, or delete that folder")
        return state
    if d.out.exists() and any(d.out.iterdir()):
        raise ConfigError(f"--out {d.out} exists and is not a pain3d demo folder (no {STATE}); "
                          "give a new or empty folder")
    return {"key": key, "done": {}}


def _train_hash(cfg) -> str:
    """What the runs depend on besides the data: the train section less where it is stored."""
    import hashlib

    t = {k: v for k, v in cfg.to_dict()["train"].items() if k != "storage"}
    return hashlib.sha256(json.dumps(t, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save(d: Demo, state: dict) -> None:
    storage.write_json(storage.resolve(str(d.out)), STATE, state)  # atomic: temp + rename


def _generate(d: Demo, cfg, state: dict) -> dict:
    from tqdm import tqdm

    from pipelines.generate import run

    with tqdm(total=d.identities, desc="generate", unit="identity", file=sys.stderr,
              dynamic_ncols=True) as bar:
        r = run(cfg, progress=bar.update)
    return {"line": r.line()}


def _train(d: Demo, cfg, mode: str, state: dict) -> dict:
    from train.run import train

    resume = (Path(d.run(mode)) / "split.json").is_file()  # interrupted: carry on
    teacher = state["done"]["teacher"]["checkpoint"] if mode == "student" else None
    r = train(cfg, mode, d.data, mode, teacher=teacher, resume=resume)
    return {"checkpoint": r.best_checkpoint, "best_epoch": r.best_metrics.get("epoch"),
            "val_macro_auroc": r.best_metrics.get("val_macro_auroc")}


def _evaluate(d: Demo, cfg, state: dict) -> dict:
    from train.evaluate import evaluate
    from train.run_folder import fetch_checkpoint

    out = {}
    for mode in ("teacher", "student"):
        run = Path(d.run(mode))
        split = json.loads((run / "split.json").read_text())
        history = json.loads((run / "history.json").read_text())
        ckpt = fetch_checkpoint(state["done"][mode]["checkpoint"])
        r = evaluate(ckpt, d.data, mode, split, "test", str(run / "eval-test"), history,
                     shots=cfg.train.eval.neutral_shots)
        out[mode] = {"frames": r["frames"], "macro_auroc": r["metrics"]["macro_auroc"],
                     "acc": r["metrics"]["acc"],
                     "pain_only_macro_auroc": r["pain_only"].get("macro_auroc")}
        print(f"  {mode}: test macro AUROC {out[mode]['macro_auroc']:.3f}, accuracy "
              f"{out[mode]['acc']:.3f} ({r['frames']} frames)", file=sys.stderr)
    return out


def _report(d: Demo, cfg, state: dict) -> dict:
    from functools import partial

    from tqdm import tqdm

    from pipelines.report import write_report

    bar = partial(tqdm, desc="report", unit="identity", file=sys.stderr, dynamic_ncols=True)
    page = write_report(d.data, str(d.out / "report"), [d.run("teacher"), d.run("student")],
                        progress=bar)
    return {"page": str(page)}


def _do(step: str, d: Demo, cfg, state: dict) -> dict:
    if step in ("teacher", "student"):
        return _train(d, cfg, step, state)
    return {"generate": _generate, "evaluate": _evaluate, "report": _report}[step](
        d, cfg, state)


def run_demo(d: Demo, cfg, verbose: bool = False) -> dict:
    """Runs the steps not done yet, recording each in demo.json; returns the state."""
    from cluster.runtime import init_ray
    from pipelines.generate import preflight

    state = _state(d, cfg)
    preflight(cfg)
    d.out.mkdir(parents=True, exist_ok=True)
    guard.mark_root(storage.resolve(str(d.out)), "demo", owns_root=True)
    for i, step in enumerate(STEPS, 1):
        head = f"[{i}/{len(STEPS)}] {step}"
        if step in state["done"]:
            print(f"{head}: done before, skipped", file=sys.stderr)
            continue
        print(f"{head} ...", file=sys.stderr)
        if step != "report":
            init_ray(cfg.generate.ray, verbose)  # once; the report needs no Ray
        t0 = time.time()
        state["done"][step] = dict(_do(step, d, cfg, state), seconds=round(time.time() - t0, 1))
        _save(d, state)
        print(f"{head}: done in {state['done'][step]['seconds']:.0f} s", file=sys.stderr)
    return state
