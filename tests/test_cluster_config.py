"""ray_config.yaml: the AWS launcher config holds every resource the presets ask for, scales
from and to zero, keeps the head free of work and the dashboard off the internet, and holds
no credentials."""
import re
from pathlib import Path

import pytest
import yaml

from cluster.config import load_config
from cluster.resources import demands, max_gpus, node_types, unplaceable

REPO = Path(__file__).resolve().parent.parent
RAY_CONFIG = REPO / "ray_config.yaml"


@pytest.mark.parametrize("preset", ["local", "paper", "tiny-diffusion"])
def test_every_preset_demand_fits_some_node_type(preset):
    cfg = load_config(preset, layers=["sweep"])
    assert unplaceable(cfg, RAY_CONFIG) == []
    d = demands(cfg)
    if preset == "paper":  # the GPU stages really ask for GPUs, and GPU nodes exist for them
        assert d["generate.stages.texturing"]["GPU"] == 1
        assert max_gpus(RAY_CONFIG) >= cfg.train.num_workers == 8


def test_a_demand_no_node_type_holds_is_reported():
    cfg = load_config("paper", ["generate.stages.texturing.num_gpus=16",
                                "generate.stages.render.num_cpus=128", "train.num_workers=64"])
    bad = unplaceable(cfg, RAY_CONFIG)
    assert any("generate.stages.texturing needs {CPU=2, GPU=16}" in b for b in bad)
    assert any("generate.stages.render" in b for b in bad)
    assert any("train.num_workers=64" in b for b in bad)


def test_launcher_config_shape():
    data = yaml.safe_load(RAY_CONFIG.read_text())
    head = data["available_node_types"][data["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # the head runs no work
    types = node_types(RAY_CONFIG)
    assert any(t.get("GPU", 0) == 1 for t in types.values())
    assert any(t.get("GPU", 0) == 8 for t in types.values())
    assert any(t.get("GPU", 0) == 0 and t["CPU"] >= 8 for t in types.values())
    for name in types:  # scale from zero and back
        t = data["available_node_types"][name]
        assert t["min_workers"] == 0 and t["max_workers"] >= 1
    assert 0 < data["idle_timeout_minutes"] <= 30
    # the dashboard binds to localhost on the head (reach it with `ray dashboard`)
    start = " ".join(data["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    setup = " ".join(data["setup_commands"])
    assert "pip install" in setup and "-e ." in setup and "HF_HOME" in setup
    assert data["file_mounts"]  # the project is synced to the nodes


def test_no_credentials_in_launcher_config():
    text = RAY_CONFIG.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # AWS access key ids
    for key in ("aws_secret_access_key", "aws_access_key_id", "AWS_SECRET", "ssh_private_key",
                "password", "token"):
        assert key.lower() not in text.lower(), key
