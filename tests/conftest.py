"""Session-wide test set-up: offline KerasCV cache, quiet Ray, shared fixtures."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLIP_DIR = Path(os.environ.get("RAYWALK_CLIP_DIR", REPO.parent / "shared" / "clip"))
CLIP_VOCAB = CLIP_DIR / "bpe_simple_vocab_16e6.txt.gz"

# Before anything imports keras or ray: a private KERAS_HOME whose download
# cache already holds the CLIP vocabulary, so KerasCV's default code path finds
# it and never touches the network; Ray workers inherit this environment.
_KERAS_HOME = Path(tempfile.mkdtemp(prefix="raywalk-keras-home-"))
(_KERAS_HOME / "datasets").mkdir()
shutil.copy(CLIP_VOCAB, _KERAS_HOME / "datasets" / CLIP_VOCAB.name)
os.environ["KERAS_HOME"] = str(_KERAS_HOME)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# The test cluster listens on loopback only; without token authentication its
# drivers, `ray job submit` and workers need no shared token file.
os.environ["RAY_AUTH_MODE"] = "disabled"


@pytest.fixture(scope="session")
def clip_vocab() -> Path:
    """The CLIP BPE vocabulary shipped beside the repository (never committed)."""
    return CLIP_VOCAB


# Test helpers live beside the tests (test renderer, S3 server); Ray workers
# import them by path too, so they go on PYTHONPATH before Ray starts.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH")) if p
)

from s3server import s3_endpoint  # noqa: E402,F401  (session fixture)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head(s3_endpoint):
    """One local Ray head for the whole session, started as `ray start --head` so that
    drivers in other processes and `ray job submit` can join it. Fake GPUs let GPU
    workers be scheduled on this CPU-only machine. The S3 server starts first so that
    Ray's workers inherit its credentials."""
    import subprocess

    port, dashboard = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="rw-ray-", dir="/tmp")
    subprocess.run(
        ["ray", "start", "--head", f"--port={port}", "--num-cpus=4", "--num-gpus=3",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        check=True, capture_output=True,
    )
    head = {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dashboard}"}
    yield head
    import ray

    ray.shutdown()
    subprocess.run(["ray", "stop", "--force"], capture_output=True)


@pytest.fixture(scope="module")
def ray_connected(ray_head):
    """This process connected to the session's Ray head."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_head["address"], logging_level="warning")
    return ray_head


@pytest.fixture(scope="session")
def sd_models():
    """KerasCV Stable Diffusion v1.4 sub-models at 128x128 with random weights, built once (~1 min, 3.5 GB)."""
    from raywalk.kerascv import build_models

    return build_models("v1.4", 128, 128, "random")
