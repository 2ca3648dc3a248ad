"""The cluster configs, checked offline: cluster.yaml with Ray's own cluster-launcher
validation, k8s/rayjob.yaml (KubeRay RayJob) for structure, both against the Ray pin.

Nothing here starts Ray or reaches a cloud: `prepare_config` + `validate_config` are
the schema/default steps of `ray up` without its provider bootstrap (which calls AWS),
and the `offline` fixture makes any connection attempt fail loudly.
"""

from __future__ import annotations

import copy
import re
import socket
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER_YAML = REPO / "cluster.yaml"
RAYJOB_YAML = REPO / "k8s" / "rayjob.yaml"
DOCKERFILE = REPO / "k8s" / "Dockerfile"
OBJECT_STORE = re.compile(r"^(s3|gs)://[^/\s]+/\S+")


def ray_pin() -> str:
    """The Ray version pyproject.toml pins (`ray[default]==X`)."""
    text = (REPO / "pyproject.toml").read_text()
    pins = re.findall(r'"ray(?:\[[^\]]*\])?==([0-9][0-9A-Za-z.]*)"', text)
    assert len(pins) == 1, f"expected one exact Ray pin in pyproject.toml, found {pins}"
    return pins[0]


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during an offline check: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def validate(config: dict) -> dict:
    """Ray's cluster-launcher validation, as `ray up` runs it before touching the cloud.

    `validate_config` alone rejects any raw file (it expects the defaults that
    `prepare_config` fills in, e.g. `cluster_synced_files`)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def gpu_types(config: dict) -> dict[str, dict]:
    return {name: t for name, t in config["available_node_types"].items() if t.get("resources", {}).get("GPU", 0)}


# ---------------------------------------------------------------- cluster.yaml


def test_cluster_yaml_passes_rays_validation(cluster, offline):
    prepared = validate(cluster)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_a_typod_top_level_key_is_rejected(cluster, offline):
    bad = copy.deepcopy(cluster)
    bad["idle_timeout_minute"] = bad.pop("idle_timeout_minutes")
    with pytest.raises(Exception, match="idle_timeout_minute"):
        validate(bad)


def test_a_typod_node_type_key_is_rejected(cluster, offline):
    bad = copy.deepcopy(cluster)
    name, node_type = next(iter(gpu_types(bad).items()))
    node_type["max_worker"] = node_type.pop("max_workers")
    with pytest.raises(Exception, match="max_worker"):
        validate(bad)


def test_a_non_integer_resource_is_rejected(cluster, offline):
    bad = copy.deepcopy(cluster)
    name, node_type = next(iter(gpu_types(bad).items()))
    node_type["resources"]["GPU"] = 0.5
    with pytest.raises(Exception, match="0.5 is not of type 'integer'"):
        validate(bad)


def test_cluster_has_a_cpu_head_and_an_autoscaling_gpu_worker(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head.get("resources", {}).get("GPU", 0) == 0
    gpus = gpu_types(cluster)
    assert gpus, "no worker type with GPUs"
    for name, node_type in gpus.items():
        assert name != cluster["head_node_type"]
        assert node_type["resources"]["GPU"] == 1, "one renderer per GPU node"
        assert node_type["min_workers"] == 0 < node_type["max_workers"] <= cluster["max_workers"]
        assert node_type["node_config"]["InstanceType"]


def test_cluster_ray_version_matches_the_package_pin(cluster):
    pin = ray_pin()
    assert ray.__version__ == pin, f"installed Ray {ray.__version__}, pyproject pins {pin}"
    setup = "\n".join(cluster["setup_commands"])
    assert re.findall(r"ray\[default\]==([0-9][0-9A-Za-z.]*)", setup) == [pin]
    image = cluster["docker"]["image"]
    assert image.split(":")[1].startswith(pin + "-"), f"docker image {image} is not Ray {pin}"


def test_cluster_nodes_install_raywalk_for_gpus(cluster):
    commands = (
        cluster["setup_commands"] + cluster.get("head_setup_commands", []) + cluster.get("worker_setup_commands", [])
    )
    assert any("pip install" in c and "raywalk[gpu]" in c for c in commands)
    # Every dependency comes from the lock, hashes checked, and raywalk itself adds none.
    locked = [c for c in commands if "--require-hashes" in c and "requirements/gpu.txt" in c]
    assert locked, "the nodes do not install the locked stack (requirements/gpu.txt)"
    raywalk = [c for c in commands if "raywalk[gpu]" in c]
    assert all("--no-deps" in c for c in raywalk), raywalk
    assert commands.index(locked[0]) < commands.index(raywalk[0])
    # The checkout pip installs from is the one file_mounts copies; it must be a raywalk checkout.
    sources = [
        local
        for remote, local in cluster["file_mounts"].items()
        if any("raywalk[gpu]" in c and remote.replace("~", "$HOME") in c for c in commands)
    ]
    assert sources, "raywalk[gpu] is not installed from a file_mounts checkout"
    for local in sources:  # relative to where `ray up` runs: the repository root
        assert (REPO / local / "pyproject.toml").is_file()
    start = "\n".join(cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"])
    assert "TF_FORCE_GPU_ALLOW_GROWTH=true" in start


# ---------------------------------------------------------------- k8s/rayjob.yaml


@pytest.fixture(scope="module")
def rayjob() -> dict:
    docs = [d for d in yaml.safe_load_all(RAYJOB_YAML.read_text()) if d]
    jobs = [d for d in docs if d.get("kind") == "RayJob"]
    assert len(jobs) == 1, "k8s/rayjob.yaml must hold exactly one RayJob"
    return jobs[0]


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_rayjob_runs_raywalk_render_into_object_storage(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    spec = rayjob["spec"]
    entrypoint = " ".join(spec["entrypoint"].split())
    assert entrypoint.startswith("raywalk render ")
    out = re.search(r"--out[ =](\S+)", entrypoint)
    assert out and OBJECT_STORE.match(out.group(1)), f"--out must be s3:// or gs://, got {entrypoint!r}"
    assert spec["shutdownAfterJobFinishes"] is True


def test_rayjob_cluster_has_a_gpu_worker_group_on_the_pinned_ray(rayjob):
    cluster = rayjob["spec"]["rayClusterSpec"]
    assert str(cluster["rayVersion"]) == ray_pin()
    assert containers(cluster["headGroupSpec"])
    gpu_groups = [
        g
        for g in cluster["workerGroupSpecs"]
        if any(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) >= 1 for c in containers(g))
    ]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    images = {c["image"] for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]] for c in containers(g)}
    assert len(images) == 1, f"head and workers must run the same image, got {images}"


def test_rayjob_pods_get_storage_credentials_from_a_secret(rayjob):
    cluster = rayjob["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for c in containers(group):
            from_secret = [e for e in c.get("envFrom", []) if "secretRef" in e] + [
                e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
            ]
            assert from_secret, f"container {c['name']} gets no credentials from a secret"


def test_k8s_image_is_built_on_the_pinned_ray_with_raywalk_gpu():
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert base.startswith(f"rayproject/ray:{ray_pin()}-") and base.endswith("-gpu"), base
    assert re.search(r"pip install .*--require-hashes -r requirements/gpu\.txt", text)
    assert re.search(r"pip install .*--no-deps .*raywalk\[gpu\]", text)
