"""`pain3d submit generate` to a Ray head this test starts and stops (non-default ports,
token auth): the job runs from the uploaded project, the S3 variables reach it, their values
are never printed."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.raycluster import RAY, Head

REPO = Path(__file__).resolve().parent.parent
SECRET = "not-a-real-secret-value-123"


@pytest.mark.slow
def test_pain3d_submit_generate(tmp_path, monkeypatch):
    head = Head(num_cpus=2)
    try:
        out = tmp_path / "job_out"
        env = dict(head.env, AWS_SECRET_ACCESS_KEY=SECRET, AWS_ACCESS_KEY_ID="AKIATESTTESTTEST",
                   AWS_REGION="eu-west-1")
        cmd = [sys.executable, "-m", "cluster.cli", "submit", "--address", head.dashboard,
               "--submission-id", "pain3d-test-job", "--wait", "generate", "--identities", "2",
               "--out", str(out), "render.size=64", "face.texture_size=128"]
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
        text = r.stdout + r.stderr
        assert r.returncode == 0, text[-3000:]
        assert "submitted job pain3d-test-job" in r.stdout
        assert f"ray job logs --address {head.dashboard} --follow pain3d-test-job" in r.stdout
        assert f"ray job stop --address {head.dashboard} pain3d-test-job" in r.stdout
        assert "AWS_SECRET_ACCESS_KEY" in r.stdout and SECRET not in text  # name, never value
        assert "2 identities generated" in r.stdout and "SUCCEEDED" in r.stdout
        m = json.loads((out / "manifest.json").read_text())
        assert m["counts"]["frames"] == 66 and m["counts"]["identities"] == 2
        from ray.job_submission import JobSubmissionClient

        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        info = JobSubmissionClient(head.dashboard).get_job_info("pain3d-test-job")
        assert info.runtime_env["env_vars"]["AWS_SECRET_ACCESS_KEY"] == SECRET  # passed through
        assert info.entrypoint.startswith("python -m cluster.cli generate")
        status = subprocess.run([RAY, "job", "list", "--address", head.dashboard],
                                env=head.env, capture_output=True, text=True, timeout=60)
        assert "SUCCEEDED" in status.stdout
    finally:
        head.stop()
    assert not head.processes()
