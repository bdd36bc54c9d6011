"""GPU stages get the GPUs Ray assigns: distinct ids on one node, GPU nodes only on a cluster."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cluster.config import load_config
from pipelines.generate import run

REPO = Path(__file__).resolve().parent.parent
GPU_STAGES = ["generate.stages.neutral_face.num_gpus=1", "generate.stages.neutral_face.num_cpus=0",
              "generate.stages.inpainting.num_gpus=1", "generate.stages.inpainting.num_cpus=0"]
SMALL = ["render.size=64", "face.texture_size=128", "generate.write_meshes=false"]


def test_fake_gpus_are_distinct_and_fall_back_to_cpu(ray_local, tmp_path, caplog):
    cfg = load_config("local", ["generate.identities=3", f"generate.out={tmp_path / 'g'}"]
                      + GPU_STAGES + SMALL)
    res = run(cfg)
    assert len(res.summaries) == 3
    nf = {s["neutral_face_gpu"] for s in res.summaries}
    inp = {s["inpainting_gpu"] for s in res.summaries}
    assert len(nf) == 1 and len(inp) == 1  # one actor each, one GPU each
    assert nf | inp == {"0", "1"}  # the two stages hold different GPUs
    assert {s["rigging_gpu"] for s in res.summaries} == {""}  # CPU stage: no GPU
    # torch sees no CUDA device here, so GPU stages run on the CPU (and say so once)
    assert {s["neutral_face_device"] for s in res.summaries} == {"cpu"}


def test_fractional_gpus_share_one(ray_local, tmp_path):
    cfg = load_config("local", ["generate.identities=2", f"generate.out={tmp_path / 'h'}",
                                "generate.stages.neutral_face.num_gpus=0.5",
                                "generate.stages.neutral_face.num_cpus=0",
                                "generate.stages.inpainting.num_gpus=0.5",
                                "generate.stages.inpainting.num_cpus=0"] + SMALL)
    res = run(cfg)
    used = {s["neutral_face_gpu"] for s in res.summaries} | {s["inpainting_gpu"]
                                                              for s in res.summaries}
    assert len(used) == 1 and used <= {"0", "1"}


MULTINODE = textwrap.dedent("""
    import json, sys
    import ray
    from ray.cluster_utils import Cluster
    from cluster.config import load_config
    from pipelines.generate import run

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "object_store_memory": 150_000_000,
        "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=150_000_000)
               for _ in range(2)]
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    head = ray.get_runtime_context().get_node_id()
    gpu_nodes = sorted(n.node_id for n in workers)
    cfg = load_config("local", sys.argv[2:] + ["generate.out=" + sys.argv[1]])
    res = run(cfg)
    print("RESULT" + json.dumps({"head": head, "gpu_nodes": gpu_nodes,
                                 "summaries": res.summaries,
                                 "frames": res.manifest["counts"]["frames"]}))
    ray.shutdown()
    cluster.shutdown()
""")


@pytest.mark.slow
def test_gpu_stages_run_only_on_gpu_nodes(tmp_path):
    args = ["generate.identities=3"] + [a.replace("num_cpus=0", "num_cpus=0.25")
                                        for a in GPU_STAGES] + SMALL + [
        "generate.stages.render.num_cpus=0.5", "generate.stages.write.num_cpus=0.25"]
    r = subprocess.run([sys.executable, "-c", MULTINODE, str(tmp_path / "mn")] + args, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    assert res["frames"] == 3 * 33
    gpu_nodes = set(res["gpu_nodes"])
    for s in res["summaries"]:
        assert s["neutral_face_node"] in gpu_nodes and s["inpainting_node"] in gpu_nodes
        assert s["neutral_face_node"] != res["head"]
        assert s["neutral_face_gpu"] == "0" and s["inpainting_gpu"] == "0"  # each node's GPU
