"""Session-wide test set-up: offline KerasCV cache, quiet Ray, shared fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
# Where the CLIP vocabulary is looked for: $RAYWALK_CLIP_DIR, ../shared/clip beside the repository, and
# KerasCV's download cache ($KERAS_HOME/datasets, ~/.keras/datasets), where the README's fix puts it.
CLIP_PLACES = list(
    dict.fromkeys(
        [Path(d).expanduser() for d in (os.environ.get("RAYWALK_CLIP_DIR"),) if d]
        + [
            REPO.parent / "shared" / "clip",
            Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets",
            Path.home() / ".keras" / "datasets",
        ]
    )
)
CLIP_VOCAB = next((d / VOCAB_NAME for d in CLIP_PLACES if (d / VOCAB_NAME).is_file()), None)

# Before anything imports keras or ray: a private KERAS_HOME whose download
# cache already holds the CLIP vocabulary, so KerasCV's default code path finds
# it and never touches the network; Ray workers inherit this environment.
_KERAS_HOME = Path(tempfile.mkdtemp(prefix="raywalk-keras-home-"))
(_KERAS_HOME / "datasets").mkdir()
if CLIP_VOCAB is not None:
    shutil.copy(CLIP_VOCAB, _KERAS_HOME / "datasets" / VOCAB_NAME)
os.environ["KERAS_HOME"] = str(_KERAS_HOME)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# The test cluster listens on loopback only; without token authentication its
# drivers, `ray job submit` and workers need no shared token file.
os.environ["RAY_AUTH_MODE"] = "disabled"


def pytest_configure(config: pytest.Config) -> None:
    """Without the CLIP vocabulary, stop the session in one line that says where to put it (the tests never
    download it)."""
    if CLIP_VOCAB is None:
        pytest.exit(
            f"the tests need the CLIP vocabulary {VOCAB_NAME}, which is in none of"
            f" {', '.join(map(str, CLIP_PLACES))}: mkdir -p ~/.keras/datasets && cp {VOCAB_NAME} ~/.keras/datasets/"
            " (or set RAYWALK_CLIP_DIR to the directory that holds it)",
            returncode=2,
        )


# Parallel runs (pytest-xdist, `-n`): every test file is a unit of work that one worker runs, except the
# units below, which join tests that must not run at the same time: each builds KerasCV's 860M-parameter
# model (5.5 GB while it builds), in this process (the `sd_models` fixture, built once per worker) or in a
# Ray worker; two units, one of each, at a time keep a 24 GB machine clear of the out-of-memory killer.
# The units start longest first, so that none of them starts last.
UNITS: dict[str, tuple[str, ...]] = {
    "kerascv-in-process": ("tests/test_kerascv.py", "tests/test_kerascv_images.py"),
    "kerascv-in-ray": (
        "tests/test_submit.py",
        "tests/test_picture_jobs.py",
        "tests/test_bench_smoke.py",  # its scripts run side by side in one worker; sampler.py builds the model
    ),
}
LONGEST_FIRST = (
    "kerascv-in-ray",
    "kerascv-in-process",
    "tests/test_liveness.py",
    "tests/test_kerashub_images.py",
    "tests/test_busy_cluster.py",
    "tests/test_timed_runs.py",
    "tests/test_render.py",
    "tests/test_kerashub.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work (`UNITS`) test `nodeid` belongs to: its group, else its file."""
    file = nodeid.split("::", 1)[0]
    return next((unit for unit, files in UNITS.items() if file in files), file)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the units of `LONGEST_FIRST` first, in that order (xdist hands units out in the order of the
    tests it collected); a serial run keeps the files' order."""
    if hasattr(config, "workerinput"):
        rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(unit_of(item.nodeid), len(rank)))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """xdist's scheduling by file, with the units of `unit_of`, handed out in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    config.option.loadscopereorder = False  # keep `pytest_collection_modifyitems`'s order
    return ByUnit(config, log)


@pytest.fixture(scope="session")
def clip_vocab() -> Path:
    """The CLIP BPE vocabulary found in `CLIP_PLACES` (never committed)."""
    assert CLIP_VOCAB is not None  # pytest_configure stopped the session otherwise
    return CLIP_VOCAB


# Test helpers live beside the tests (test renderer, S3 server); Ray workers
# import them by path too, so they go on PYTHONPATH before Ray starts.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH")) if p)

from builders import store, tiny_sd3, uri, worker  # noqa: E402,F401  (fixtures: run locations, local and S3; the tiny SD3

# model; an in-process worker)
from s3server import s3_endpoint, s3_faults  # noqa: E402,F401  (session fixtures)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RAY_PORT_FLAGS = (
    "port",
    "dashboard-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
    "ray-client-server-port",
    "runtime-env-agent-port",
)


def start_ray_head(*extra: str, num_cpus: int = 4, num_gpus: int = 3, env: dict | None = None):
    """`ray start --head --block` on free ports (every one of them: other Ray clusters may run on
    this machine), in a process group of its own, so that `stop_ray_head` stops exactly this
    cluster. Returns (process, {"address", "dashboard"}) once the dashboard answers."""
    import subprocess
    import time
    import urllib.request

    ports = {flag: _free_port() for flag in RAY_PORT_FLAGS}
    temp = tempfile.mkdtemp(prefix="rw-ray-", dir="/tmp")
    log = open(os.path.join(temp, "ray-start.log"), "w")
    proc = subprocess.Popen(
        [
            "ray",
            "start",
            "--head",
            "--block",
            f"--num-cpus={num_cpus}",
            f"--num-gpus={num_gpus}",
            *(f"--{flag}={port}" for flag, port in ports.items()),
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    head = {"address": f"127.0.0.1:{ports['port']}", "dashboard": f"http://127.0.0.1:{ports['dashboard-port']}"}
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_ray_head(proc)
            raise RuntimeError(f"ray start failed: {open(log.name).read()[-2000:]}")
        try:
            with urllib.request.urlopen(head["dashboard"] + "/api/version", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.5)
    return proc, head


def stop_ray_head(proc) -> None:
    """Stop the cluster `start_ray_head` started, by its process group, and nothing else.

    SIGKILL at once: a test cluster holds nothing to save, and `ray start --block` given SIGTERM takes
    over 30 s to end (SIGTERM cost every session and every test with a cluster of its own that long)."""
    import signal

    try:  # raylet, GCS, dashboard and workers share its process group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="session")
def ray_head(s3_endpoint):  # noqa: F811 (the session fixture imported above)
    """One local Ray head for the whole session, started as `ray start --head` so that
    drivers in other processes and `ray job submit` can join it. Fake GPUs let GPU
    workers be scheduled on this CPU-only machine. The S3 server starts first so that
    Ray's workers inherit its credentials."""
    proc, head = start_ray_head()
    yield head
    import ray

    ray.shutdown()
    stop_ray_head(proc)


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
    from raywalk.renderers.kerascv import build_models

    return build_models("v1.4", 128, 128, "random")
