"""Rigging with Neural Face Rigging (Qin et al. 2023) through the model bridge.

NFR runs in its own environment (bridge/nfr_server.py drives its ``test_user.py``
functions); this backend turns each expression's AUs into NFR's 53 ICT/ARKit codes, sends
the identity's neutral mesh and the code rows, and maps NFR's output back onto the face
model's own vertices:

- the neutral frame is NFR's output at code 0, so pain minus neutral is code motion only;
- NFR mean-centres each output; the shift that puts back is the median displacement from
  the code-0 output (the static majority of the face), and the neutral goes back to the
  input's centroid;
- pieces NFR drops (it keeps only the largest connected one: eyeballs, teeth) follow the
  code-0 drift of their nearest rigged vertices rigidly, so vertex count and order stay.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from actors.base import StageConfig, options_of, register
from actors.bridged import HoldsWorker, local, start_worker, worker_spec
from actors.options import BridgeOptions, rng
from bridge.nfr_server import BUNDLE_FILES, checkpoint_path
from faces.flame_rig import umeyama
from faces.models import make_face_model
from faces.objfile import write_obj
from faces.rig import RIG_AUS

# NFR's control codes, in its order (test_user.py's expression_bases; ICT FaceKit / ARKit)
ICT_CODES = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L",
    "browOuterUp_R", "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R",
    "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R",
    "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R",
    "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft",
    "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R")
# each AU drives these codes (both sides) at the same weight
AU_TO_ICT = {
    "AU4": ("browDown_L", "browDown_R"),  # brow lowerer
    "AU6": ("cheekSquint_L", "cheekSquint_R"),  # cheek raiser
    "AU7": ("eyeSquint_L", "eyeSquint_R"),  # lid tightener
    "AU9": ("noseSneer_L", "noseSneer_R"),  # nose wrinkler
    "AU10": ("mouthUpperUp_L", "mouthUpperUp_R"),  # upper lip raiser
    "AU43": ("eyeBlink_L", "eyeBlink_R"),  # eyes closed
    "AU12": ("mouthSmile_L", "mouthSmile_R"),  # lip corner puller
    "AU25": ("mouthLowerDown_L", "mouthLowerDown_R"),  # lips part (lower lip drops)
    "AU26": ("jawOpen",),  # jaw drop
}


@dataclass(frozen=True)
class NFROptions(BridgeOptions):
    config: str = "config/test.yml"  # relative to options.repo
    load_head: str = "ICT_augment_cnn_ext_dfn4_grad"  # the experiment in <bundle>/experiments
    resume_id: int = rng(0, 10**6, 0)
    scale: float = rng(1e-6, 1e6, 1.0)  # pain3d metres -> NFR's frame (see align.blend)
    shift: list = field(default_factory=lambda: [0.0, 0.0, 0.0])  # after scaling
    code_at_5: float = rng(0.0, 1.0, 1.0)  # ICT weight of an AU at intensity 5
    curve_gamma: float = rng(0.25, 4.0, 1.0)  # weight = code_at_5 * (intensity / 5) ** gamma

    def __post_init__(self):
        super().__post_init__()
        if len(self.shift) != 3 or not all(isinstance(x, (int, float)) for x in self.shift):
            raise ValueError(f"shift must be three numbers, got {self.shift!r}")


def ict_codes(aus: np.ndarray, o: NFROptions) -> np.ndarray:
    """(n_expr, len(RIG_AUS)) AU intensities 0-5 -> (n_expr, 53) ICT codes in [-1, 1]."""
    aus = np.asarray(aus, np.float64)
    codes = np.zeros((len(aus), len(ICT_CODES)))
    for j, au in enumerate(RIG_AUS):
        w = o.code_at_5 * np.clip(aus[:, j] / 5.0, 0.0, None) ** o.curve_gamma
        for name in AU_TO_ICT[au]:
            codes[:, ICT_CODES.index(name)] += w
    return np.clip(codes, -1.0, 1.0).astype(np.float32)


def bundle_missing(bundle: str, o: NFROptions) -> list[str]:
    need = [os.path.join(bundle, f) for f in BUNDLE_FILES]
    need.append(checkpoint_path(bundle, o.load_head, o.resume_id))
    return [p for p in need if not os.path.exists(p)]


def _components(faces: np.ndarray, n: int) -> np.ndarray:
    f = np.asarray(faces)
    a = coo_matrix((np.ones(f.size), (f.ravel(), np.roll(f, 1, axis=1).ravel())), shape=(n, n))
    return connected_components(a, directed=False)[1]


def place_output(neutral: np.ndarray, faces: np.ndarray, rig_input: np.ndarray,
                 outputs: np.ndarray, scale: float, shift) -> np.ndarray:
    """NFR's outputs (n, K, 3; row 0 at code 0) as (n, V, 3) frames of the face model."""
    neutral = np.asarray(neutral, np.float64)
    src = (np.asarray(rig_input, np.float64) - np.asarray(shift, np.float64)) / scale
    diag = np.linalg.norm(neutral.max(0) - neutral.min(0))
    dist, j = cKDTree(src).query(neutral)
    hit = dist < 1e-5 * diag
    if len(np.unique(j[hit])) < len(src) * 0.99:
        raise ValueError(f"NFR rigged a mesh of {len(src)} vertices of which only "
                         f"{len(np.unique(j[hit]))} match the face model's; check "
                         "rigging.options.scale / shift")
    out = np.asarray(outputs, np.float64) / scale + src.mean(0)  # undo the mean-centring
    out[1:] -= np.median(out[1:] - out[:1], axis=1, keepdims=True)  # the static majority
    frames = np.repeat(neutral[None], len(out), axis=0)
    frames[:, hit] = out[:, j[hit]]
    if hit.all():
        return frames.astype(np.float32)
    labels = _components(faces, len(neutral))
    rigged = np.flatnonzero(hit)
    tree = cKDTree(neutral[hit])
    main = np.bincount(labels[hit]).argmax()
    stray = np.flatnonzero(~hit & (labels == main))  # dropped from the rigged piece itself
    if len(stray):  # each follows its nearest rigged vertex, frame by frame
        near = rigged[np.atleast_1d(tree.query(neutral[stray])[1])]
        frames[:, stray] = neutral[stray] + (frames[:, near] - neutral[near])
    for lab in np.unique(labels[~hit & (labels != main)]):
        piece = np.flatnonzero(labels == lab)
        k = min(64, len(rigged))
        near = rigged[np.atleast_1d(tree.query(neutral[piece].mean(0), k=k)[1])]
        rot, t = _rigid(neutral[near], frames[0, near])  # the code-0 drift, no scale
        frames[:, piece] = neutral[piece] @ rot.T + t
    return frames.astype(np.float32)


def _rigid(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation taking ``src`` onto ``dst`` (least squares, no scale)."""
    _, rot, _ = umeyama(src, dst)
    return rot, dst.mean(0) - rot @ src.mean(0)


@register("rigging", "nfr", options=NFROptions)
class NFRRig(HoldsWorker):
    """Neural Face Rigging through the model bridge. ``rigging.model`` is NFR's data bundle
    (the authors' download: ``data/`` and ``experiments/``); ``options.python`` and
    ``options.repo`` are NFR's environment and clone. Expression parameters stored are the
    53 ICT codes each expression was rigged with."""

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        o = options_of("rigging", cfg)
        if not cfg.model:
            raise ValueError("rigging.backend 'nfr' needs rigging.model: the folder of NFR's "
                             "data bundle (data/ and experiments/ from the authors' download)")
        missing = bundle_missing(local(cfg.model), o)
        if missing:
            raise FileNotFoundError(f"rigging.model {cfg.model} is not NFR's data bundle: "
                                    f"{', '.join(missing)} missing; unpack the authors' "
                                    "download there (scripts/setup_model_env.sh nfr)")
        self.o = o
        self.model = make_face_model(context["face"])
        self.faces = np.asarray(self.model.template.faces)
        self.server = start_worker(self.worker_spec(cfg, o))
        self._n = 0

    missing = staticmethod(bundle_missing)  # what `pain3d check` reports

    @staticmethod
    def worker_spec(cfg: StageConfig, o: NFROptions):
        return worker_spec("rigging", "nfr", "nfr_server", o, bundle=local(cfg.model or ""),
                           config=o.config, load_head=o.load_head, resume_id=o.resume_id,
                           scale=o.scale, shift=list(o.shift))

    def rig(self, neutral: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(n, 53) codes -> (n, V, 3) frames; every all-zero row is the code-0 output."""
        rows = np.vstack([np.zeros((1, codes.shape[1]), np.float32), codes])
        uniq, inv = np.unique(rows, axis=0, return_inverse=True)
        order = np.argsort(np.abs(uniq).sum(1), kind="stable")  # the zero row first
        uniq, inv = uniq[order], np.argsort(order)[inv.ravel()]
        self._n += 1
        mesh = write_obj(os.path.join(self.server.work_dir, f"mesh-{self._n}.obj"), neutral,
                         self.faces)
        try:
            _, arrays = self.server.call({"mesh": str(mesh)}, {"codes": uniq})
        finally:  # the mesh and the image NFR's render_img saves beside it
            for p in (mesh, mesh.with_name(mesh.stem + "_img.npy")):
                p.unlink(missing_ok=True)
        if arrays.get("vertices") is None or arrays["vertices"].shape[0] != len(uniq):
            raise ValueError(f"NFR returned {arrays.get('vertices', np.empty(0)).shape} "
                             f"vertices for {len(uniq)} code rows")
        frames = place_output(neutral, self.faces, arrays["rig_input"], arrays["vertices"],
                              self.o.scale, self.o.shift)
        return frames[inv[1:]]

    def __call__(self, batch: dict) -> dict:
        verts, params = [], []
        for shape, aus in zip(batch["shape"], batch["aus"]):
            codes = ict_codes(aus, self.o)
            verts.append(self.rig(self.model.neutral(shape).astype(np.float32), codes))
            params.append(codes)
        batch["vertices"] = np.stack(verts)
        batch["expression_params"] = np.stack(params)
        return batch
