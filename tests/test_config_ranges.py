"""Every numeric config key: finite, inside its documented range, named when it is not.

Property-based (Hypothesis): random finite, non-finite, huge, negative and wrongly-typed
values go to every numeric key; each run either succeeds or ends with one line and exit 2,
never a traceback, and an accepted value always lies inside the README's range."""
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from cluster.cli import main
from cluster.config import ConfigError, Pain3DConfig, load_config
from cluster.validate import RANGES, numeric_keys, range_key

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
# the numeric keys as they are set on the command line (a list element set as a 1-list)
KEYS = sorted(set(numeric_keys(Pain3DConfig)))
MAPPED = {"pspi.weights{}": "pspi.weights", "demographics.table{}{}": "demographics.table",
          "tune.space{}.low": "tune.space", "tune.space{}.high": "tune.space"}

ANY_VALUE = st.one_of(
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e-308, 2 ** 63 - 1, float("nan"), float("inf")]),
    st.text(max_size=8), st.booleans(), st.none(), st.lists(st.integers(), max_size=2))


def test_every_numeric_key_has_a_documented_range():
    for key in KEYS:
        assert range_key(key) in RANGES, f"{key} has no range in cluster/validate.py"
    for key in RANGES:
        assert f"`{key}`" in README, f"{key} is missing from the README's ranges table"


def _override(key: str, value) -> str:
    """key=value as the command line takes it; list keys get a one-element list, the length
    checks of fixed-size lists are not what this test is about."""
    base = key.removesuffix("[]")
    if key.endswith("[]"):
        dflt = _default(base)
        value = [value] + list(dflt[1:]) if dflt else [value]
    return f"{base}={_yaml(value)}"


def _yaml(value) -> str:
    """One value as flow-style YAML on one line, as a person would type it."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _default(dotted: str):
    cur = Pain3DConfig()
    for part in dotted.split("."):
        cur = getattr(cur, part)
    return cur


def _get(cfg, dotted: str):
    cur = cfg
    for part in dotted.removesuffix("[]").split("."):
        cur = getattr(cur, part)
    return cur[0] if dotted.endswith("[]") else cur


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(KEYS), value=ANY_VALUE)
def test_any_value_is_accepted_in_range_or_refused_by_name(key, value):
    try:
        cfg = load_config("local", [_override(key, value)])
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg
        assert key.removesuffix("[]").split(".")[-1] in msg or "render.camera needs" in msg \
            or "totals" in msg or "freeze_backbone" in msg or "start + generate" in msg, msg
        return
    got = _get(cfg, key)
    if got is None:  # an optional key (e.g. face.flame_n_shape): None means "not set"
        assert value is None and not key.endswith("[]"), (key, value)
        return
    lo, hi = RANGES[range_key(key)]
    assert isinstance(got, (int, float)) and math.isfinite(got) and lo <= got <= hi, (key, got)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(sorted(MAPPED)), value=ANY_VALUE)
def test_mapping_values_are_checked_too(key, value):
    v = _yaml(value)
    over = {"pspi.weights{}": f"pspi.weights={{5: {v}, 6: 1}}",
            "demographics.table{}{}": f"demographics.table.gender={{man: 2000, woman: {v}}}",
            "tune.space{}.low": f"tune.space.au={{low: {v}, high: 500}}",
            "tune.space{}.high": f"tune.space.au={{low: 0.5, high: {v}}}"}[key]
    try:
        cfg = load_config("local", [over])
    except ConfigError as e:
        assert MAPPED[key].split(".")[-1] in str(e) or "tune.space" in str(e), str(e)
        return
    got = {"pspi.weights{}": lambda c: c.pspi.weights[5],
           "demographics.table{}{}": lambda c: c.demographics.table["gender"]["woman"],
           "tune.space{}.low": lambda c: c.tune.space["au"].low,
           "tune.space{}.high": lambda c: c.tune.space["au"].high}[key](cfg)
    lo, hi = RANGES[key]
    assert math.isfinite(got) and lo <= got <= hi, (key, got)


# keys that change the picture; values drawn inside their ranges, sizes kept small
RENDER_KEYS = [k for k in KEYS if k.split(".")[0] in ("render", "heatmap", "face")
               and not k.startswith(("render.size", "face.texture_size", "face.flame"))]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(RENDER_KEYS), frac=st.floats(0, 1))
def test_in_range_values_render_a_face_or_fail_in_one_line(key, frac, tmp_path, capsys):
    lo, hi = RANGES[range_key(key)]
    value = lo + frac * (hi - lo)
    if isinstance(_get(Pain3DConfig(), key), int) and not isinstance(_get(Pain3DConfig(), key), bool):
        value = int(round(value))
    out = tmp_path / f"p{abs(hash((key, frac)))}.png"
    rc = main(["preview", "--identities", "1", "--out", str(out), "render.size=32",
               "face.texture_size=64", _override(key, value)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc != 0:
        event("refused")
        assert rc == 2 and len(re.findall(r"^pain3d: error:", err, re.M)) == 1, err
        return
    event("rendered")
    img = np.asarray(Image.open(out).convert("L"), float)
    assert img.std() > 5, f"{key}={value}: a flat contact sheet"


@pytest.mark.parametrize("override,key", [
    ("render.yaws=[.nan]", "render.yaws"), ("pspi.weights={5: .nan, 6: 1}", "pspi.weights.5"),
    ("render.camera.fov_deg=0", "render.camera.fov_deg"), ("heatmap.scale_m=0", "heatmap.scale_m"),
    ("render.size=.inf", "render.size"), ("face.texture_size=100000", "face.texture_size"),
    ("render.size=.nan", "render.size")])
def test_issue_cases_name_their_key(override, key, tmp_path, capsys):
    rc = main(["preview", "--out", str(tmp_path / "p.png"), override])
    err = capsys.readouterr().err
    assert rc == 2 and f"'{key}" in err and err.count("\n") <= 2 and "Traceback" not in err, err
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("cmd,argv,needle", [
    ("preview", ["--start", "9223372036854775807"], "--start must be between 0 and"),
    ("preview", ["--identities", "1000000000"], "--identities must be between 1 and 64"),
    ("generate", ["--start", "9223372036854775807"], "'generate.start' must be between 0 and"),
    ("generate", ["--identities", "1000000000"],
     "'generate.identities' must be between 1 and 100,000")])
def test_flags_are_bounded_before_anything_runs(cmd, argv, needle, tmp_path, capsys):
    out = tmp_path / ("p.png" if cmd == "preview" else "d")
    rc = main([cmd, "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err, err
    assert not out.exists()
