"""Output to S3 through pyarrow's S3 filesystem, against a moto server on 127.0.0.1."""
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from tests.raycluster import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="pain3d-test")
    yield env, client
    server.stop()


def _run(args, env_extra):
    env = dict(os.environ, **env_extra)
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "cluster.cli", "generate"] + args, cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_generate_to_s3_and_rerun(s3):
    env, client = s3
    args = ["--identities", "2", "--out", "s3://pain3d-test/runs/a", "render.size=64",
            "face.texture_size=128", "generate.ray.num_cpus=2",
            "generate.ray.object_store_memory=150000000"]
    r = _run(args, env)
    assert r.returncode == 0, r.stderr[-3000:]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="pain3d-test")["Contents"]}
    assert {"runs/a/frames/identity=000000.parquet", "runs/a/frames/identity=000001.parquet",
            "runs/a/manifest.json", "runs/a/run.json",
            "runs/a/textured_meshes/000001/neutral.obj"} <= keys
    assert not [k for k in keys if "/.tmp-" in k or "_probe-" in k]  # no temporaries left
    fs = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"].split("//")[1],
                           scheme="http", access_key="testing", secret_key="testing",
                           region="us-east-1")
    t = pads.dataset("pain3d-test/runs/a/frames", filesystem=fs, format="parquet").to_table(
        columns=["sample_id", "pspi"])
    assert t.num_rows == 66
    m = json.loads(client.get_object(Bucket="pain3d-test", Key="runs/a/manifest.json")["Body"].read())
    assert m["counts"]["frames"] == 66
    r2 = _run(args, env)
    assert r2.returncode == 0 and "0 identities generated, 2 already done" in r2.stdout


def test_missing_bucket_is_one_clear_error(s3):
    env, _ = s3
    r = _run(["--identities", "1", "--out", "s3://no-such-bucket/x"], env)
    assert r.returncode == 2
    assert "bucket" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_training_checkpoints_to_s3(s3, tmp_path):
    env, client = s3
    data = tmp_path / "d"
    r = _run(["--identities", "6", "--out", str(data), "render.size=48", "face.texture_size=128",
              "generate.write_meshes=false", "generate.ray.num_cpus=2"], env)
    assert r.returncode == 0, r.stderr[-2000:]
    run_env = dict(os.environ, **env)
    run_env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "cluster.cli", "train", "teacher", "--data", str(data),
           "--name", "s3run", "train.storage=s3://pain3d-test/runs", "train.epochs=2",
           "train.model.backbone=vit_tiny_patch16_224", "train.model.img_size=32",
           "train.model.backbone_kwargs={depth: 2, patch_size: 8}",
           "train.model.head_hidden=32", "train.cpus_per_worker=0.5", "train.use_gpu=false",
           "generate.ray.num_cpus=2", "generate.ray.object_store_memory=200000000"]
    t = subprocess.run(cmd, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=600)
    assert t.returncode == 0, (t.stdout + t.stderr)[-3000:]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="pain3d-test",
                                                     Prefix="runs/s3run/")["Contents"]}
    assert "runs/s3run/split.json" in keys and "runs/s3run/history.json" in keys
    models = [k for k in keys if k.endswith("/model/model.pt")]
    assert len(models) == 2  # one checkpoint per epoch, both kept (num_to_keep=2)
    best = client.get_object(Bucket="pain3d-test", Key="runs/s3run/best_checkpoint.txt")
    best_uri = best["Body"].read().decode()
    assert best_uri.startswith("s3://pain3d-test/runs/s3run/checkpoint_")
    from train.run_folder import fetch_checkpoint

    os.environ.update(env)  # the checkpoint is read back through the same S3 settings
    try:
        local = fetch_checkpoint(best_uri)
    finally:
        for k in env:
            os.environ.pop(k, None)
    assert (Path(local) / "model.pt").stat().st_size > 1000
