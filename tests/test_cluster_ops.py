"""Cluster operation on one machine: the autoscaler adds GPU nodes for a generation's GPU
stages and removes them when idle (Ray's fake multi-node provider), and a generation survives
losing a worker node (ray.cluster_utils.Cluster)."""
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.raycluster import Head, free_port

REPO = Path(__file__).resolve().parent.parent
SMALL = ["render.size=64", "face.texture_size=128", "generate.write_meshes=false"]


def fake_cluster_yaml(path: Path, head_port: int, node_ip: str) -> Path:
    """A fake_multinode cluster config with ray_config.yaml's worker node types: the same
    names and GPU counts, small CPU counts (every fake node is a set of processes here)."""
    real = yaml.safe_load((REPO / "ray_config.yaml").read_text())
    types = {"ray.head.default": {"resources": {"CPU": 0, "object_store_memory": 150_000_000},
                      "node_config": {}, "min_workers": 0, "max_workers": 0}}
    for name, t in real["available_node_types"].items():
        if name == real["head_node_type"]:
            continue
        gpus = int(t["resources"].get("GPU", 0))
        res = {"CPU": 1, "GPU": gpus} if gpus else {"CPU": 2}
        types[name] = {"resources": {**res, "object_store_memory": 150_000_000},
                       "node_config": {}, "min_workers": 0,
                       "max_workers": min(3, t["max_workers"])}
    cfg = {"cluster_name": "pain3d-fake", "max_workers": 4, "upscaling_speed": 1.0,
           "idle_timeout_minutes": 0.2,
           "provider": {"type": "fake_multinode", "gcs_address": f"{node_ip}:{head_port}",
                        "use_node_id_as_ip": True, "disable_node_updaters": True,
                        "disable_launch_config_check": True},
           "available_node_types": types, "head_node_type": "ray.head.default",
           "docker": {}, "auth": {}, "file_mounts": {}, "cluster_synced_files": [],
           "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
           "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
           "worker_setup_commands": [], "head_start_ray_commands": [],
           "worker_start_ray_commands": []}
    path.write_text(yaml.safe_dump(cfg))
    return path


NODES = ("import json, sys; from ray.util.state import list_nodes; "
         "print('NODES' + json.dumps([n.resources_total.get('GPU', 0) for n in "
         "list_nodes(address=sys.argv[1], raise_on_missing_output=False) if n.state == 'ALIVE']))")


def _nodes(head) -> list[float]:
    """The GPUs of each live node, from the head's state API (in a process of its own:
    token authentication is read once per process)."""
    r = subprocess.run([sys.executable, "-c", NODES, head.dashboard], env=head.env,
                       capture_output=True, text=True, timeout=120)
    line = next((x for x in r.stdout.splitlines() if x.startswith("NODES")), None)
    assert line is not None, r.stderr[-2000:]
    return json.loads(line[len("NODES"):])


@pytest.mark.slow
def test_autoscaler_adds_gpu_nodes_then_removes_them(tmp_path):
    from ray._private.services import get_node_ip_address

    port = free_port()
    conf = fake_cluster_yaml(tmp_path / "fake.yaml", port, get_node_ip_address())
    head = Head(num_cpus=0, extra_env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
                extra_args=[f"--autoscaling-config={conf}"], port=port)
    try:
        assert _nodes(head) == [0]  # the head alone, no GPU
        out = tmp_path / "ds"
        cmd = [sys.executable, "-m", "cluster.cli", "generate", "--identities", "3", "--out",
               str(out), *SMALL, "generate.stages.neutral_face.num_gpus=1",
               "generate.stages.inpainting.num_gpus=1"]
        p = subprocess.Popen(cmd, cwd=REPO, env=dict(head.env, RAY_ADDRESS=head.address),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        most_gpus, deadline = 0, time.time() + 600
        while p.poll() is None and time.time() < deadline:
            most_gpus = max(most_gpus, sum(_nodes(head)))
            time.sleep(2)
        log = p.communicate(timeout=60)[0]
        assert p.returncode == 0, log[-3000:]
        assert most_gpus >= 1  # the GPU stages made the autoscaler add GPU nodes
        m = json.loads((out / "manifest.json").read_text())
        assert m["counts"]["frames"] == 99 and m["counts"]["identities"] == 3
        deadline = time.time() + 180  # idle_timeout_minutes 0.2: idle nodes go again
        while time.time() < deadline:
            alive = _nodes(head)
            if len(alive) == 1:
                break
            time.sleep(3)
        assert alive == [0], alive
    finally:
        head.stop()


NODE_LOSS = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    import ray
    from ray.cluster_utils import Cluster
    from cluster.config import load_config
    from pipelines.generate import run

    out = Path(sys.argv[1])
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 150_000_000, "include_dashboard": False})
    doomed = cluster.add_node(num_cpus=2, object_store_memory=150_000_000)
    cluster.add_node(num_cpus=2, object_store_memory=150_000_000)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    cfg = load_config("local", sys.argv[2:] + ["generate.out=" + str(out)])
    result = {}
    t = threading.Thread(target=lambda: result.update(res=run(cfg)))
    t.start()
    while not list((out / "frames").glob("identity=*.parquet")) if (out / "frames").exists() \\
            else True:
        time.sleep(0.2)
    cluster.remove_node(doomed)  # a spot node lost mid-run
    print("REMOVED after", len(list((out / "frames").glob("identity=*.parquet"))), flush=True)
    t.join()
    print("DONE", result["res"].manifest["counts"]["frames"], flush=True)
    ray.shutdown()
    cluster.shutdown()
""")


@pytest.mark.slow
def test_generation_survives_losing_a_worker_node(tmp_path):
    out = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-c", NODE_LOSS, str(out), "generate.identities=6", *SMALL],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    removed_after = int(r.stdout.split("REMOVED after", 1)[1].split()[0])
    assert removed_after < 6  # the node went while work was left
    shards = sorted((out / "frames").glob("identity=*.parquet"))
    assert [s.name for s in shards] == [f"identity={i:06d}.parquet" for i in range(6)]
    ids = [x for s in shards for x in pq.read_table(s, columns=["sample_id"]).column(0).to_pylist()]
    assert len(ids) == 6 * 33 and len(set(ids)) == len(ids)  # no duplicates, no gaps
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["frames"] == 198 and m["counts"]["duplicate_sample_ids"] == 0
    assert not list((out / "frames").glob(".tmp-*"))  # no temporaries left among the shards
