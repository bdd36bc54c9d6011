"""`pain3d generate` submitted with `ray job submit` to a head this test starts and stops."""
import json
import subprocess
from pathlib import Path

import pytest

from tests.raycluster import RAY, Head

REPO = Path(__file__).resolve().parent.parent
EXCLUDES = [".venv", ".git", "data", "runs", "out", "docs", "*.parquet", "__pycache__"]


@pytest.mark.slow
def test_ray_job_submit_generate(tmp_path):
    head = Head(num_cpus=2)
    try:
        out = tmp_path / "job_out"
        runtime_env = {"excludes": EXCLUDES}
        cmd = [RAY, "job", "submit", "--address", head.dashboard, "--working-dir", str(REPO),
               "--runtime-env-json", json.dumps(runtime_env), "--",
               "python", "-m", "cluster.cli", "generate", "--identities", "2", "--out", str(out),
               "render.size=64", "face.texture_size=128"]
        r = subprocess.run(cmd, env=head.env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        assert "succeeded" in (r.stdout + r.stderr).lower()
        assert "2 identities generated" in r.stdout
        m = json.loads((out / "manifest.json").read_text())
        assert m["counts"]["frames"] == 66 and m["counts"]["identities"] == 2
        status = subprocess.run([RAY, "job", "list", "--address", head.dashboard],
                                env=head.env, capture_output=True, text=True, timeout=60)
        assert "SUCCEEDED" in status.stdout
    finally:
        head.stop()
    assert not head.processes()
