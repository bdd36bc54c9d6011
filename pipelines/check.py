"""`pain3d check`: everything a config needs, looked at before any GPU time is spent.

Every file, weight folder, Python module and cluster resource the config's generation needs
is listed as found / missing / wrong-format (or "not cached" for a hub id), with where to get
what is missing. Nothing is loaded onto a GPU; the FLAME files are read and the AU rig is
derived (seconds, on CPU) because that is where a wrong file shows.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass

from actors.base import StageConfig, backend_class, stage_files

FOUND, MISSING, WRONG, NOT_CACHED = "found", "missing", "wrong-format", "not cached"
KANDINSKY_CLASSES = {"neutral_face": "KandinskyV22ControlnetPipeline",
                     "inpainting": "KandinskyV22InpaintPipeline",
                     "prior": "KandinskyV22PriorPipeline"}
HF_HELP = "huggingface-cli download {repo} --local-dir {where}"


@dataclass
class Item:
    section: str
    what: str
    where: str
    status: str
    detail: str = ""
    fix: str = ""

    @property
    def bad(self) -> bool:
        return self.status in (MISSING, WRONG)


def check_config(cfg) -> list[Item]:
    items = _face(cfg)
    st = cfg.generate.stages
    for name in st.MODEL_STAGES:
        items += _stage(name, getattr(st, name), cfg)
    items += _modules(cfg)
    items += _resources(cfg)
    return items


def _try(section, what, where, load, fix) -> Item:
    if not where:
        return Item(section, what, "(not set)", MISSING, fix=fix)
    if not os.path.exists(where):
        return Item(section, what, where, MISSING, fix=fix)
    try:
        detail = load() or ""
    except (ValueError, OSError, KeyError) as e:
        return Item(section, what, where, WRONG, str(e).splitlines()[0][:200], fix)
    return Item(section, what, where, FOUND, detail)


def _face(cfg) -> list[Item]:
    f = cfg.face
    if f.model != "flame":
        return [Item("face", "face model", "built-in head", FOUND, "no files needed")]
    from faces.flame import FLAME_HELP, FlameModel
    from faces.flame_rig import LANDMARK_HELP, LandmarkEmbedding
    from faces.models import _texture_space, make_face_model

    state = {}

    def flame():
        state["m"] = FlameModel.load(f.flame_path, f.flame_n_shape)
        m = state["m"]
        return f"{len(m.v_template)} vertices, {m.n_shape} shape + {m.n_expression} expression"

    items = [_try("face", "FLAME model", f.flame_path, flame, FLAME_HELP)]
    faces = state["m"].faces if "m" in state else None
    if f.au_basis_path:
        items.append(_try("face", "AU basis (overrides the derived rig)", f.au_basis_path,
                          lambda: None, "leave face.au_basis_path unset to derive the rig"))
    else:
        items.append(_try("face", "FLAME MediaPipe landmark embedding", f.flame_landmarks_path,
                          lambda: faces is not None and LandmarkEmbedding.load(
                              f.flame_landmarks_path, len(faces)) and "",
                          LANDMARK_HELP))
    tex_help = ("download 'FLAME texture space' (FLAME_texture.npz) from "
                "https://flame.is.tue.mpg.de and set face.flame_uv_path")
    items.append(_try("face", "FLAME texture space", f.flame_uv_path,
                      lambda: faces is not None and _texture_space(f.flame_uv_path, faces.shape)
                      and "", tex_help))
    if not any(i.bad for i in items):
        items.append(_try("face", "AU rig", f.au_basis_path or f.flame_path,
                          lambda: _rig_detail(make_face_model(f)), "see the items above"))
    return items


def _rig_detail(model) -> str:
    d = model.derived
    if d is None:
        return f"given: {model.basis.source}"
    fits = [e["fit_r2"] for e in d["aus"].values()]
    return f"derived, cached at {model.basis.source}; fit R² {min(fits):.3f}-{max(fits):.3f}"


def _stage(name: str, sc: StageConfig, cfg) -> list[Item]:
    section = f"generate.stages.{name} ({sc.backend})"
    items = []
    if sc.backend == "kandinsky":
        from actors.base import options_of

        o = options_of(name, sc)
        items.append(_diffusers(section, "decoder", sc.model or _default(name),
                                KANDINSKY_CLASSES[name]))
        items.append(_diffusers(section, "prior", o.prior, KANDINSKY_CLASSES["prior"]))
    elif sc.backend in ("nfr", "hunyuan3d"):
        items += _bridged(section, name, sc)
    elif sc.backend == "learned":
        for key, path in stage_files(name, sc):
            items.append(_try(section, key, path, lambda: None,
                              f"point {key} at the {sc.backend} weights"))
        if not sc.model:
            items.append(Item(section, "weights", "(not set)", MISSING,
                              fix=f"set generate.stages.{name}.model"))
    elif sc.backend == "mediapipe":
        from actors.qa import model_path

        try:
            items.append(Item(section, "face landmarker bundle", model_path(sc.model), FOUND))
        except (FileNotFoundError, RuntimeError, ValueError) as e:
            items.append(Item(section, "face landmarker bundle", sc.model or "(installed)",
                              MISSING, fix=str(e)))
    return items


def _bridged(section: str, name: str, sc: StageConfig) -> list[Item]:
    """A model behind the bridge: its environment, clone and weights, then its worker
    started once to import the model's code and check its files (no weights loaded)."""
    from actors.base import options_of
    from actors.bridged import local, probe_worker
    from bridge.client import BridgeError

    o = options_of(name, sc)
    cls = backend_class(name, sc.backend)
    setup = f"bash scripts/setup_model_env.sh {sc.backend}"
    items = [_try(section, key, path, lambda: None, f"{setup}, then set {key}")
             for key, path in stage_files(name, sc)]
    items += [Item(section, "weights", "(not set)", MISSING,
                   fix=f"set generate.stages.{name}.model ({setup})")] if not sc.model else []
    if sc.model and os.path.isdir(local(sc.model)):
        missing = cls.missing(local(sc.model), o)
        items.append(Item(section, "weights", sc.model, MISSING if missing else FOUND,
                          "; ".join(missing)[:300], fix=setup))
    if not any(i.bad for i in items):
        try:
            info = probe_worker(cls.worker_spec(sc, o))
            p = info.get("probe", {})
            detail = f"Python {info['python']}, numpy {info['numpy']}" + "".join(
                f", {k} {v}" for k, v in p.items() if k in ("torch", "cuda"))
            items.append(Item(section, "model code (worker started, imports checked)",
                              o.repo, FOUND, detail))
        except BridgeError as e:
            items.append(Item(section, "model code (worker started, imports checked)", o.repo,
                              WRONG, str(e)[:300], fix=setup))
    return items


def _default(name: str) -> str:
    from actors.diffusion import DEFAULT_CONTROLNET, DEFAULT_INPAINT

    return DEFAULT_CONTROLNET if name == "neutral_face" else DEFAULT_INPAINT


def _diffusers(section: str, what: str, where: str, cls: str) -> Item:
    """A diffusers folder (model_index.json naming ``cls``, its component folders) or a hub
    id (in the local cache or not)."""
    from actors.base import looks_local

    fix = (HF_HELP.format(repo="<repo>", where=where) if looks_local(where) else
           f"huggingface-cli download {where} (into the Hugging Face cache of every GPU node), "
           "or download it to a folder and give that folder")
    if not looks_local(where):
        try:
            from huggingface_hub import snapshot_download

            where_cached = snapshot_download(where, local_files_only=True)
        except Exception:  # noqa: BLE001 - not in the cache
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            return Item(section, what, where, MISSING if offline else NOT_CACHED,
                        "hub id; downloaded on first use where the hub is reachable", fix)
        return _diffusers(section, what, where_cached, cls)
    index = os.path.join(os.path.expanduser(where), "model_index.json")
    if not os.path.isfile(index):
        return Item(section, what, where, MISSING, "no model_index.json", fix)
    try:
        meta = json.loads(open(index).read())
    except ValueError as e:
        return Item(section, what, where, WRONG, f"model_index.json: {e}", fix)
    if meta.get("_class_name") != cls:
        return Item(section, what, where, WRONG,
                    f"a {meta.get('_class_name')}, not a {cls}", fix)
    parts = [k for k, v in meta.items() if not k.startswith("_") and isinstance(v, list)
             and v[0] is not None and k != "image_encoder"]  # the prior's encoder is not loaded
    gone = [k for k in parts if not os.path.isdir(os.path.join(os.path.expanduser(where), k))]
    if gone:
        return Item(section, what, where, WRONG, f"component folders missing: {', '.join(gone)}",
                    fix)
    return Item(section, what, where, FOUND, f"{cls}: {', '.join(parts)}")


def _modules(cfg) -> list[Item]:
    st = cfg.generate.stages
    need = {"ray": "pip install 'ray[data,train,tune]'", "moderngl": "pip install moderngl"}
    for name in st.MODEL_STAGES:
        sc = getattr(st, name)
        if sc.backend == "kandinsky":
            need.update({m: f"pip install {m}" for m in ("torch", "diffusers", "transformers")})
        elif sc.backend == "mediapipe":
            need["mediapipe"] = "pip install mediapipe"
    return [Item("python modules", m, "importable", FOUND if _importable(m) else MISSING,
                 fix=fix) for m, fix in need.items()]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def _resources(cfg) -> list[Item]:
    st = cfg.generate.stages
    lo = sum(getattr(st, n).num_gpus * getattr(st, n).concurrency[0] for n in st.MODEL_STAGES)
    hi = sum(getattr(st, n).num_gpus * getattr(st, n).concurrency[1] for n in st.MODEL_STAGES)
    have, where = _gpus()
    status = FOUND if have >= lo else MISSING
    detail = (f"the stages need {lo:g} GPUs at their minimum concurrency and use up to {hi:g}; "
              f"{where} has {have:g}")
    fix = "run on (or submit to) a cluster with GPUs; the autoscaler adds nodes up to the maximum"
    return [Item("cluster resources", "GPUs for generation", where, status, detail,
                 fix if status == MISSING else "")]


def _gpus() -> tuple[float, str]:
    """GPUs of the Ray cluster at RAY_ADDRESS (connecting only if it is set), else here."""
    if os.environ.get("RAY_ADDRESS"):
        import ray

        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False,
                 logging_level="ERROR", ignore_reinit_error=True)
        try:
            return float(ray.cluster_resources().get("GPU", 0)), "the Ray cluster now"
        finally:
            ray.shutdown()
    try:
        import torch

        return float(torch.cuda.device_count()), "this machine"
    except ImportError:
        return 0.0, "this machine"


def format_items(items: list[Item]) -> str:
    lines, section = [], None
    for it in items:
        if it.section != section:
            section = it.section
            lines.append(f"\n{section}")
        lines.append(f"  [{it.status:^13}] {it.what}: {it.where}"
                     + (f"  ({it.detail})" if it.detail else ""))
        if it.bad or it.status == NOT_CACHED:
            lines.append(f"      -> {it.fix}")
    bad = sum(i.bad for i in items)
    lines.append(f"\n{len(items)} items: {bad} missing or wrong" if bad else
                 f"\n{len(items)} items: everything the config needs is in place")
    return "\n".join(lines).lstrip("\n")
