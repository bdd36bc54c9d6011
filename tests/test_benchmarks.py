"""The benchmark scripts that the GPU machines and the paper-scale run use start and report
consistent figures (speed is never asserted)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args, tmp_path, timeout):
    out = tmp_path / "figures.json"
    r = subprocess.run([sys.executable, *args, "--json", str(out)], cwd=ROOT, timeout=timeout,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


@pytest.mark.slow
def test_diffusion_benchmark_runs_on_the_tiny_pipelines(tmp_path):
    """The full-size benchmark's code path (bare diffusers loop, then pain3d's actor pool)
    on the tiny random pipelines, on the CPU."""
    fig, out = _run(["benchmarks/diffusion.py", "--tiny", "--device", "cpu", "--images", "6",
                     "--batch", "2", "--steps", "2", "--prior-steps", "2", "--size", "64"],
                    tmp_path, 600)
    assert fig["bare_images_s"] > 0 and fig["pool_images_s"] > 0
    assert fig["ratio"] == pytest.approx(fig["pool_images_s"] / fig["bare_images_s"])
    assert "ratio pool / bare" in out


@pytest.mark.slow
def test_real_path_benchmark_runs_on_the_tiny_pipelines(tmp_path):
    """The paper preset's conformance run (every stage through its actor shell, at the paper's
    sizes) on the tiny pipelines: each stage is timed and measured, the frames show a face."""
    fig, out = _run(["benchmarks/real_path.py", "--tiny", "--work", str(tmp_path / "w")],
                    tmp_path, 900)
    stages = [r["stage"] for r in fig["stages"]]
    assert stages == ["rigging", "neutral_face", "texturing", "render", "inpainting", "qa",
                      "write"]
    assert all(r["peak_rss_gb"] > 0 and r["run_s"] >= 0 for r in fig["stages"])
    inp = next(r for r in fig["stages"] if r["stage"] == "inpainting")
    assert inp["prior_image_encoder_skipped_bytes"] > 0 and inp["prior_loaded_bytes"] > 0
    assert 0.0 <= fig["qa_face_found"] <= 1.0  # random weights paint noise: faces are not expected
    assert (tmp_path / "w" / "frames.png").exists()


@pytest.mark.slow
def test_scale_benchmark_extrapolates_from_its_own_run(tmp_path):
    fig, out = _run(["benchmarks/scale.py", "--identities", "4"], tmp_path, 900)
    assert fig["identities"] == 4 and fig["frames"] == 4 * 33
    expect = fig["middle_s"] + (2500 - 2) * 33 / fig["marginal_fps"]  # 2 of 4 at the middle
    assert fig["paper_estimate_min"] == pytest.approx(expect / 60)
    run_s = 4 * 33 / fig["after_init_fps"]  # the run after ray.init, scaled to 2,500
    assert fig["paper_upper_min"] == pytest.approx((fig["ray_init_s"] + run_s * 2500 / 4) / 60)
    assert len(fig["quarter_peaks_gb"]) == 4 and 0.2 < fig["peak_gb"] < 20
    assert fig["ray_init_s"] < fig["startup_s"] < fig["total_s"]
    assert "paper scale (2500 identities, 82500 frames)" in out
