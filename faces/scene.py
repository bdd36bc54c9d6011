"""Per-identity set-up of the photo: key light, backdrop and small camera jitter.

Each identity draws its own scene from the stream (seed, identity, "scene"), so every
expression and view of that identity shares it (a pain frame and its neutral differ only by
the face) and it regenerates identically. Each part can be switched off
(``render.vary.lighting/background/camera: false``), which gives the preset's fixed set-up.
The key light is fixed in the world (relative to the frontal camera), so it stays put as the
camera orbits; the fill light stays near the camera.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from faces.demographics import identity_rng

BACKDROPS = ("plain wall", "door", "window", "shelves", "curtain", "tiles")
NEUTRAL_K = 6500.0  # a colour temperature rendered as white


@dataclass
class VaryConfig:
    """Ranges of the per-identity variation (uniform), and which parts vary at all."""

    lighting: bool = True
    background: bool = True
    camera: bool = True
    light_azimuth_deg: tuple[float, float] = (-60.0, 60.0)  # + = from the subject's left
    light_elevation_deg: tuple[float, float] = (5.0, 50.0)
    light_intensity: tuple[float, float] = (0.75, 1.15)  # times render.lighting.key
    light_temperature_k: tuple[float, float] = (3200.0, 6500.0)
    camera_distance: tuple[float, float] = (0.93, 1.07)  # times render.camera.distance
    camera_pitch_deg: tuple[float, float] = (-5.0, 5.0)  # added to render.camera.pitch_deg
    camera_roll_deg: tuple[float, float] = (-4.0, 4.0)


@dataclass
class Scene:
    """One identity's set-up; its fields are the frames table's scene columns."""

    light_azimuth_deg: float
    light_elevation_deg: float
    light_intensity: float  # factor on the key light
    light_temperature_k: float
    background: str
    background_seed: int
    camera_distance_m: float
    camera_pitch_deg: float
    camera_roll_deg: float

    def columns(self) -> dict:
        return asdict(self)


def key_angles(key_dir) -> tuple[float, float]:
    """Azimuth and elevation (degrees) of a direction towards the light."""
    d = np.asarray(key_dir, np.float64)
    d = d / np.linalg.norm(d)
    return float(np.degrees(np.arctan2(d[0], d[2]))), float(np.degrees(np.arcsin(d[1])))


def sample_scene(seed: int, identity: int, rcfg) -> Scene:
    """The identity's scene; parts switched off take the preset's fixed values."""
    v: VaryConfig = rcfg.vary
    rng = identity_rng(seed, identity, "scene")
    draws = {k: rng.uniform(*getattr(v, k)) for k in (
        "light_azimuth_deg", "light_elevation_deg", "light_intensity", "light_temperature_k",
        "camera_distance", "camera_pitch_deg", "camera_roll_deg")}
    kind, bg_seed = BACKDROPS[rng.integers(len(BACKDROPS))], int(rng.integers(2 ** 31))
    az, el = key_angles(rcfg.lighting.key_dir)
    cam = rcfg.camera
    if v.lighting:
        az, el = draws["light_azimuth_deg"], draws["light_elevation_deg"]
    return Scene(
        light_azimuth_deg=round(az, 3), light_elevation_deg=round(el, 3),
        light_intensity=round(draws["light_intensity"], 4) if v.lighting else 1.0,
        light_temperature_k=round(draws["light_temperature_k"], 1) if v.lighting else NEUTRAL_K,
        background=kind if v.background else "plain wall",
        background_seed=bg_seed if v.background else 0,
        camera_distance_m=round(cam.distance * (draws["camera_distance"] if v.camera else 1), 5),
        camera_pitch_deg=round(cam.pitch_deg + (draws["camera_pitch_deg"] if v.camera else 0), 3),
        camera_roll_deg=round(draws["camera_roll_deg"], 3) if v.camera else 0.0)


def kelvin_rgb(k: float) -> np.ndarray:
    """Linear RGB of a black body at ``k`` kelvin, scaled so that NEUTRAL_K is white
    (a fit of the Planck locus good to a few per cent between 1,500 and 15,000 K)."""
    def srgb(t):
        t = t / 100.0
        r = 255.0 if t <= 66 else 329.7 * (t - 60) ** -0.1332
        g = 99.47 * np.log(t) - 161.1 if t <= 66 else 288.1 * (t - 60) ** -0.0755
        b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5 * np.log(t - 10) - 305.0)
        return np.clip([r, g, b], 0, 255) / 255.0

    c = srgb(float(k)) ** 2.2 / np.maximum(srgb(NEUTRAL_K) ** 2.2, 1e-6)
    return c / c.max()


def camera_for(rcfg, target, yaw: float, scene: Scene):
    from faces.render import Camera

    c = rcfg.camera
    return Camera(yaw_deg=float(yaw), pitch_deg=scene.camera_pitch_deg,
                  distance=scene.camera_distance_m, fov_deg=c.fov_deg, target=tuple(target),
                  near=c.near, far=c.far, roll_deg=scene.camera_roll_deg)


def lighting_for(rcfg, camera, scene: Scene):
    """The render's Lighting for one view: the scene's world-fixed key in camera space."""
    from faces.render import Lighting

    base = rcfg.lighting
    az, el = np.radians(scene.light_azimuth_deg), np.radians(scene.light_elevation_deg)
    world = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    key_cam = camera.view()[:3, :3] @ world
    return Lighting(key_dir=tuple(key_cam.tolist()), fill_dir=base.fill_dir,
                    key=base.key * scene.light_intensity, fill=base.fill, ambient=base.ambient,
                    key_color=tuple(kelvin_rgb(scene.light_temperature_k).tolist()))
