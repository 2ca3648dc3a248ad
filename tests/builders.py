"""What tests build their inputs from: jobs, index rows, run stores (local and S3), renderer settings, renders
on the test cluster, the CLI in this process, and a bounded wait on a condition (no fixed sleeps).

Test modules import from here (and from conftest, doubles, s3server), never from one another.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from raywalk import job_from_dict
from raywalk.core.job import Job, Model
from raywalk.exec.driver import WorkerSpec

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
RUN = "run-a"  # the run id test chunks are written for, unless told otherwise
FINGERPRINT = "f" * 64
CPU_WORKER = WorkerSpec(count=1, gpus=0, cpus=0.5)  # one worker of half a CPU on the test cluster


# ---------------------------------------------------------------------------- waiting


def wait_for(condition: Callable[[], T], timeout: float = 60, interval: float = 0.02) -> T | None:
    """Poll `condition` until it returns something true and return that; None after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_until(condition: Callable[[], T], timeout: float = 60, interval: float = 0.02, what: str = "") -> T:
    """Poll `condition` until it returns something true and return that; fail the test after `timeout` s."""
    value = wait_for(condition, timeout, interval)
    if not value:
        pytest.fail(f"waited {timeout} s for {what or getattr(condition, '__name__', 'a condition')}")
    return value


def alive_workers(head: dict[str, str]) -> list:
    """The render workers (Ray actors) alive on the test cluster `head` (other Ray clusters may run here)."""
    from ray.util.state import list_actors

    return list_actors(head["dashboard"], filters=[("class_name", "=", "RenderWorker"), ("state", "=", "ALIVE")])


# ---------------------------------------------------------------------------- jobs


def job_data(
    walk: dict | None = None,
    prompts: int | Sequence[str] = 3,
    noise: dict | None = None,
    *,
    frames: int = 12,
    **sections: Any,
) -> dict:
    """A job file's data: `prompts` (a count, or the prompts), `walk` (default: interpolate `frames`), `noise` if
    given (an empty section is the default noise), a 64x64 model unless `model` is given, and any other
    `sections` as they are."""
    data: dict[str, Any] = {}
    if "name" in sections:
        data["name"] = sections.pop("name")
    data["prompts"] = [f"prompt {k}" for k in range(prompts)] if isinstance(prompts, int) else list(prompts)
    data["walk"] = walk if walk is not None else {"kind": "interpolate", "frames": frames}
    if noise is not None:
        data["noise"] = noise
    data["model"] = {"width": 64, "height": 64}
    return data | sections


def make_job(
    walk: dict | None = None, prompts: int | Sequence[str] = 3, noise: dict | None = None, **sections: Any
) -> Job:
    """`job_data`, validated."""
    return job_from_dict(job_data(walk, prompts, noise, **sections))


def fake_job(
    frames: int = 24, chunk_size: int = 5, prompts: tuple[str, str] = ("a red fox", "a blue whale"), name: str = "walk"
) -> Job:
    """A walk for the test renderer, as workers render it in-process."""
    return make_job(
        {"kind": "interpolate", "frames": frames},
        prompts,
        {"kind": "per_frame", "seed": 7},
        name=name,
        model={"renderer": "doubles:FakeRenderer", "width": 64, "height": 64, "steps": 1, "batch_size": 2},
        chunking={"chunk_size": chunk_size},
        outputs={"gif": {"fps": 5}},
    )


def write_job(
    tmp_path: Path,
    name: str = "walk",
    frames: int = 12,
    chunk_size: int = 4,
    batch_size: int = 2,
    renderer: str = "doubles:FakeRenderer",
    options: dict | None = None,
    walk: dict | None = None,
    outputs: dict | None = None,
) -> Path:
    """A job file for the test renderer on one CPU worker; its path."""
    data = job_data(
        walk or {"kind": "interpolate", "frames": frames, "method": "slerp"},
        ["a red fox"] if walk and walk["kind"] == "text_walk" else ["a red fox", "a blue whale"],
        {"kind": "per_frame", "seed": 7},
        name=name,
        model={
            "renderer": renderer,
            "width": 64,
            "height": 64,
            "steps": 2,
            "batch_size": batch_size,
            "options": options or {},
        },
        chunking={"chunk_size": chunk_size, "max_attempts": 3},
        workers={"cpus": 0.5, "gpus": 0},
        outputs={"gif": {"fps": 5}} if outputs is None else outputs,
    )
    path = tmp_path / f"{name}-{chunk_size}-{frames}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def synthetic_job_data(frames: int = 12, chunk_size: int = 4, outputs: dict | None = None) -> dict:
    """The job of `synthetic_run`."""
    return job_data(
        {"kind": "interpolate", "frames": frames},
        ["a red fox", "a blue whale"],
        {"kind": "fixed", "seed": 1},
        name="synthetic",
        model={"renderer": "doubles:FakeRenderer", "width": 64, "height": 64, "steps": 2},
        chunking={"chunk_size": chunk_size},
        outputs={"gif": {"fps": 5}, "mp4": {}, "contact_sheet": {}} if outputs is None else outputs,
    )


# Each shipped timing job, made small: a test renderer at 64x64, fewer frames, small chunks.
SMALL = {
    "keyframe-times": {"timing": {"fps": 6}},  # keyframes at 0, 1.5 s and 4 s: 25 frames
    "music-walk": {"timing": {"fps": 3}},  # 10 s of soundtrack: 30 frames, the storm at frame 18
    "perceptual-walk": {"walk": {"frames": 16}, "pacing": {"samples": 5, "size": 64, "steps": 1}},
}


def small_job(tmp_path: Path, name: str, renderer: str = "doubles:FakeRenderer", **options: float) -> Path:
    """jobs/NAME.yaml with a test renderer, written beside its own copy of jobs/audio/."""
    data = yaml.safe_load((REPO / "jobs" / f"{name}.yaml").read_text())
    for section, values in SMALL[name].items():
        data[section] = {**data.get(section, {}), **values}
    data["model"] = {**data["model"], "renderer": renderer, "width": 64, "height": 64, "steps": 1, "options": options}
    data["chunking"] = {"chunk_size": 4}
    data["workers"] = {"cpus": 0.5, "gpus": 0}
    if "contact_sheet" in data.get("outputs", {}):
        data["outputs"]["contact_sheet"] = {"every": 2, "columns": 8, "tile": 32}
    shutil.copytree(REPO / "jobs" / "audio", tmp_path / "audio", dirs_exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------------------- renderer settings


def model(
    renderer: str = "doubles:FakeRenderer",
    weights: object = "random",
    *,
    width: int = 64,
    height: int = 128,
    steps: int = 2,
    guidance_scale: float = 7.5,
    batch_size: int = 2,
    options: dict | None = None,
) -> Model:
    """A job's model section (test modules name their renderer's defaults and pass the options through)."""
    return Model(
        renderer=renderer,
        width=width,
        height=height,
        steps=steps,
        guidance_scale=guidance_scale,
        weights=str(weights),
        precision="auto",
        batch_size=batch_size,
        options=options or {},
    )


# ---------------------------------------------------------------------------- the tiny SD3 renderer

SD3_SIZE, SD3_STEPS = 64, 3  # KerasHub's tiny random configuration at 64x64, 3 steps


@pytest.fixture(scope="module")
def tiny_sd3() -> Any:
    """One tiny SD3 backbone and preprocessor for a test module (built in seconds)."""
    import types

    from raywalk.renderers.sd3.tiny import tiny_backbone, tiny_preprocessor

    return types.SimpleNamespace(backbone=tiny_backbone(SD3_SIZE, SD3_SIZE), preprocessor=tiny_preprocessor())


def tiny_sd3_renderer(tiny: Any, **settings: Any) -> Any:
    """raywalk's SD3 renderer on the `tiny_sd3` backbone, at `SD3_SIZE` and `SD3_STEPS` unless `settings` say."""
    from raywalk.renderers.sd3.renderer import StableDiffusion3Renderer

    defaults = dict(width=SD3_SIZE, height=SD3_SIZE, steps=SD3_STEPS, weights="random", batch_size=2, config="tiny")
    return StableDiffusion3Renderer.from_backbone(tiny.backbone, tiny.preprocessor, **(defaults | settings))


# ---------------------------------------------------------------------------- index rows


def png(frame: int, size: int = 16) -> bytes:
    """A small PNG that differs per frame."""
    rng = np.random.default_rng(frame)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_chunk(
    store,
    chunk: int,
    frames: list[int],
    images: dict[int, bytes] | None = None,
    attempt: int = 0,
    size: int = 16,
    run_id: str = RUN,
    fingerprint: str = FINGERPRINT,
) -> str:
    """Write frames' PNGs, then the chunk's index rows with one extra trajectory column, as a worker does;
    returns the index file's name."""
    rows = []
    for frame in frames:
        data = images[frame] if images else png(frame, size)
        rows.append({"frame": frame, **store.write_frame(frame, data)})
    return store.write_chunk_index(
        chunk,
        {
            "frame": [r["frame"] for r in rows],
            "file": [r["file"] for r in rows],
            "sha256": [r["sha256"] for r in rows],
            "bytes": [r["bytes"] for r in rows],
            "width": [size] * len(rows),
            "height": [size] * len(rows),
            "chunk": [chunk] * len(rows),
            "attempt": [attempt] * len(rows),
            "node": ["node-a"] * len(rows),
            "worker": ["w0"] * len(rows),
            "seconds": [0.5] * len(rows),
            "t": [f / 10 for f in frames],
        },
        run_id=run_id,
        fingerprint=fingerprint,
    )


def timing_rows(
    chunks: dict[int, tuple[str, str, list[float]]],
    frames_per_chunk: int = 2,
    written: dict[int, float] | None = None,
    attempt: dict[int, int] | None = None,
) -> dict[str, list]:
    """Index columns for chunks {chunk: (worker, node, seconds of each frame)}."""
    out: dict[str, list] = {k: [] for k in ("frame", "chunk", "attempt", "worker", "node", "seconds")}
    if written is not None:
        out["written"] = []
    for chunk, (worker, node, seconds) in chunks.items():
        for i, s in enumerate(seconds):
            out["frame"].append(chunk * frames_per_chunk + i)
            out["chunk"].append(chunk)
            out["attempt"].append((attempt or {}).get(chunk, 1))
            out["worker"].append(worker)
            out["node"].append(node)
            out["seconds"].append(s)
            if written is not None:
                out["written"].append(written[chunk])
    return out


def synthetic_run(
    uri: str,
    frames: int = 12,
    done: range | list[int] = (),
    chunk_size: int = 4,
    written: bool = True,
    workers: int = 2,
    attempts: dict[int, int] | None = None,
):
    """A run as a render leaves it, written without Ray: manifest, frames `done`, their index
    (chunk c on attempt `attempts[c]`, else 1)."""
    from raywalk.exec.driver import run_manifest
    from raywalk.run.manifest import new_manifest
    from raywalk.run.store import RunStore

    job = job_from_dict(synthetic_job_data(frames, chunk_size))
    store = RunStore(uri)
    store.write_manifest(
        run_manifest(
            new_manifest(job),
            {"random_weights": True, "renderer": {"kind": "fake"}, "versions": {"numpy": np.__version__}},
        )
    )
    by_chunk: dict[int, list[int]] = {}
    for frame in done:
        by_chunk.setdefault(frame // chunk_size, []).append(frame)
    data = b"\x89PNG not decoded by the report"
    for chunk, chunk_frames in by_chunk.items():
        for frame in chunk_frames:
            store.write_frame(frame, data)
        columns = {
            "frame": chunk_frames,
            "file": [f"frames/{f:06d}.png" for f in chunk_frames],
            "sha256": [hashlib.sha256(data).hexdigest()] * len(chunk_frames),
            "bytes": [len(data)] * len(chunk_frames),
            "width": [64] * len(chunk_frames),
            "height": [64] * len(chunk_frames),
            "chunk": [chunk] * len(chunk_frames),
            "attempt": [(attempts or {}).get(chunk, 1)] * len(chunk_frames),
            "node": ["node-a"] * len(chunk_frames),
            "worker": [f"worker-{chunk % workers}"] * len(chunk_frames),
            "seconds": [0.5] * len(chunk_frames),
            "segment": [0] * len(chunk_frames),
            "t": [f / max(frames - 1, 1) for f in chunk_frames],
        }
        # Without `written`, rows as raywalk wrote them before the column (null).
        columns["written"] = [1_700_000_000.0 + chunk // workers * chunk_size * 0.5 if written else None] * len(
            chunk_frames
        )
        store.write_chunk_index(chunk, columns)
    return store


# How, not what, a frame was made (the fingerprint and the frame's text too: jobs that differ only in test
# renderer options make the same pixels; the stack too: fake-GPU workers have device kind "gpu", the test
# renderer's frames do not depend on it).
VOLATILE = ("attempt", "node", "host", "worker", "seconds", "run_id", "fingerprint", "written", "parameters", "stack")


def index_rows(out: Path, skip: tuple[str, ...] = ()) -> list[dict]:
    """The index's rows without how they were made (nor the columns `skip`), each once (the index is
    append-only: a frame rendered again adds a row)."""
    from raywalk.run.store import RunStore

    table = RunStore(str(out)).read_index()
    drop = VOLATILE + skip
    rows = {json.dumps({k: v for k, v in r.items() if k not in drop}, sort_keys=True) for r in table.to_pylist()}
    return sorted((json.loads(r) for r in rows), key=lambda r: (r["frame"], r["chunk"]))


# ---------------------------------------------------------------------------- stores


def location(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh run location's URI: a local directory ("local") or a prefix in the session's S3 server ("s3")."""
    if kind == "local":
        return str(tmp_path / "run")
    name = f"{request.module.__name__}/{request.node.originalname}-{time.time_ns()}"
    return request.getfixturevalue("s3_endpoint").uri(name)


@pytest.fixture(params=["local", "s3"])
def uri(request, tmp_path) -> str:
    """A fresh run location's URI, in a local directory and in the session's S3 server."""
    return location(request.param, request, tmp_path)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """A fresh run location, in a local directory and in the session's S3 server."""
    from raywalk.run.store import RunStore

    return RunStore(location(request.param, request, tmp_path))


class _Context:
    """What RenderWorker asks of Ray's runtime context."""

    def get_node_id(self) -> str:
        return "node-test"

    def get_actor_id(self) -> str:
        return "worker-test"


@pytest.fixture
def worker(monkeypatch):
    """Build a RenderWorker for (job, uri) in this process, Ray's runtime stubbed (no Ray started)."""
    import ray

    from raywalk.exec.worker import RenderWorker

    monkeypatch.setattr(ray, "get_runtime_context", _Context)
    monkeypatch.setattr(ray, "get_gpu_ids", list)  # what a CPU worker sees; asking Ray itself would start one
    return lambda job, uri: RenderWorker(job, job.fingerprint(), uri)


def start(store, job: Job, worker):
    """What the driver does for a fresh run: fence, encode the prompts, record their hash."""
    from raywalk.run.manifest import new_manifest

    manifest = new_manifest(job)
    store.start_fresh(manifest)
    manifest = manifest.replace(keyframes_sha256=worker(job, store.uri).encode_keyframes())
    store.write_manifest(manifest)
    return manifest


def copy_run(run_dir: Path, to: Path) -> Path:
    """A copy of a finished run directory at `to` (tests share one render and change their own copy)."""
    shutil.copytree(run_dir, to, symlinks=True)
    return to


# ---------------------------------------------------------------------------- renders on the test cluster


def cpu_worker_args(address: str) -> list[str]:
    """The CLI options of one CPU worker on the test cluster at `address`."""
    return ["--address", address, "--workers", "1", "--gpus-per-worker", "0", "--cpus-per-worker", "0.5"]


def render_then_sigkill(job_file: Path, out: Path, address: str, timeout: float = 120) -> None:
    """`raywalk render` of `job_file` into `out` in a driver process of its own on the cluster at `address`,
    killed with SIGKILL once two chunks are indexed; fails unless it really stopped mid-run (of 6 chunks)."""
    import signal
    import sys

    driver = subprocess.Popen(
        [sys.executable, "-m", "raywalk.cli", "render", str(job_file), "--out", str(out), *cpu_worker_args(address)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def two_chunks_written() -> bool:
        assert driver.poll() is None, driver.stdout.read() if driver.stdout else ""
        return len(list((out / "index").glob("*.parquet"))) >= 2

    wait_until(two_chunks_written, timeout=timeout, what="the driver to render two chunks")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert len(list((out / "index").glob("*.parquet"))) < 6  # it really stopped mid-run


def quiet():
    """Progress that prints nowhere."""
    from raywalk.exec.progress import Progress

    return Progress(0, 0, stream=io.StringIO(), bar=False)


def run(job_path: Path, out: Path, workers: WorkerSpec = CPU_WORKER, **kwargs):
    """`render` of a job file into `out` on one CPU worker (unless told); (outcome, what it printed)."""
    from raywalk import load_job
    from raywalk.exec.driver import render
    from raywalk.exec.progress import Progress

    job = load_job(job_path)
    progress = Progress(job.num_frames, 0, stream=io.StringIO(), bar=False)
    outcome = render(job, str(out), workers=workers, progress=progress, **kwargs)
    return outcome, progress.stream.getvalue()


def frame_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}


def frame_pixels(out: Path) -> dict[str, bytes]:
    """Each frame's decoded pixels: what jobs that differ only in test renderer options share (their PNGs'
    text names their own job)."""
    return {p.name: Image.open(p).tobytes() for p in sorted((out / "frames").glob("*.png"))}


# ---------------------------------------------------------------------------- the CLI in this process


def cli(*args: object, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`raywalk ARGS` through click's CliRunner, in this process: what `subprocess.run([..., "-m", "raywalk.cli",
    *ARGS], capture_output=True, text=True)` gives, without a new interpreter's imports (seconds each).
    Commands whose output goes through `logging` or process-wide state need a real process instead."""
    from raywalk.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)
    return subprocess.CompletedProcess(["raywalk", *map(str, args)], result.exit_code, result.stdout, result.stderr)


# ---------------------------------------------------------------------------- pictures


def picture(width: int, height: int, border: int = 0, seed: int = 0) -> np.ndarray:
    """A uint8 (height, width, 3) picture: seeded noise inside a pure red border `border` pixels wide."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if border:
        pixels[:border], pixels[-border:], pixels[:, :border], pixels[:, -border:] = 0, 0, 0, 0
        for edge in (pixels[:border], pixels[-border:], pixels[:, :border], pixels[:, -border:]):
            edge[..., 0] = 255
    return pixels


def write_picture(path: Path, width: int = 96, height: int = 64, seed: int = 0, fmt: str = "PNG") -> Path:
    """`picture(width, height, seed=seed)` saved at `path`; its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture(width, height, seed=seed)).save(path, format=fmt)
    return path


def picture_job_data(
    frames: int = 12,
    images: Sequence[str | None] = ("images/a.png", None),
    strengths: Sequence[float] = (0.5, 0.0),
    init_image: dict | None = None,
    steps: int = 4,
    renderer: str = "doubles:FakeRenderer",
    chunk_size: int = 4,
    noise: dict | None = None,
    walk: dict | None = None,
    options: dict | None = None,
    outputs: dict | None = None,
) -> dict:
    """A job whose keyframes (one per image entry, evenly spaced) start from `images` (None: text only) at
    `strengths`, or, with `init_image`, a walk whose every frame starts from it; for the test renderer."""
    if walk is None:
        last = frames - 1
        at = [round(k * last / (len(images) - 1)) for k in range(len(images))]
        keyframes = [
            {"at": f, **({"image": image, "strength": s} if image and init_image is None else {})}
            for f, image, s in zip(at, images, strengths)
        ]
        walk = {"kind": "interpolate", "keyframes": keyframes, "method": "slerp"}
    if init_image is not None:
        walk = {**walk, "init_image": init_image}
    prompts = [("" if image and init_image is None else f"prompt {k}") for k, image in enumerate(images)]
    if walk["kind"] != "interpolate":
        prompts = ["a red fox"] * (4 if walk["kind"] == "grid" else 1)
    return job_data(
        walk,
        prompts,
        noise or {"kind": "circle" if walk["kind"] == "noise_circle" else "per_frame", "seed": 7},
        name="pictures",
        model={
            "renderer": renderer,
            "width": 64,
            "height": 64,
            "steps": steps,
            "batch_size": 2,
            "options": options or {},
        },
        chunking={"chunk_size": chunk_size, "max_attempts": 3},
        workers={"cpus": 0.5, "gpus": 0},
        outputs=outputs or {"gif": {"fps": 5}},
    )


def write_picture_job(tmp_path: Path, name: str = "pictures.yaml", **options: Any) -> Path:
    """`picture_job_data(**options)` as a job file in `tmp_path`, with images/a.png and images/b.png beside it."""
    write_picture(tmp_path / "images" / "a.png", 96, 64, seed=1)
    write_picture(tmp_path / "images" / "b.png", 64, 80, seed=2)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(picture_job_data(**options)))
    return path
