"""The Ray actor that hosts one renderer and renders chunks into the run directory.

One actor per GPU: the model is built once in the constructor and reused for
every chunk. A chunk's frames come from the pure trajectory, are rendered in
batches, and their PNGs are encoded and written on a thread while the next
batch renders. The chunk's index rows are written last, into a file of their
own, so a frame counts as done only once both its PNG and its row exist. Writes
are idempotent: a retried chunk overwrites the same PNGs with the same bytes and
adds a file of rows, and readers tolerate the duplicates.

Every chunk reads the manifest first: its rows carry the manifest's run id, and
a worker refuses to render for a run that now holds another job, or from
keyframes or a walk table (`timing.npy`) whose SHA-256 is not the manifest's.

A perceptually paced job's first pass (`raywalk.core.pacing.first_pass_job`) is
rendered by the same actors, with a second renderer built for its smaller
size and fewer steps the first time one is asked for.

A job that starts from pictures has them encoded once, with the prompts: the
run's copies are decoded, fitted to the model's size (`raywalk.core.picture`)
and encoded by the renderer (`encode_images`), and the latents stored with the
prompts' encodings (part `PICTURES_PART`, covered by `keyframes_sha256`). Each
frame then starts from `Trajectory.starts`; the first pass encodes the pictures
again, at its own size, with its own renderer.
"""

from __future__ import annotations

import io
import os
import platform
import sys
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from typing import Any

import numpy as np
import ray
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from raywalk.core.frameinfo import TEXT_KEY, frame_text
from raywalk.core.job import Job
from raywalk.core.pacing import first_pass_job, first_pass_trajectory
from raywalk.core.picture import fit_picture
from raywalk.core.stack import BACKEND_PACKAGES, PACKAGES, Stack, describe_difference
from raywalk.core.starts import Starts
from raywalk.core.timing import needs_table
from raywalk.core.trajectory import Encodings, Trajectory, select
from raywalk.errors import RunError, RunLocationError, StackChangeError
from raywalk.renderers.contract import PictureRenderer, Renderer, load_renderer
from raywalk.run.artifacts import split_pictures
from raywalk.run.manifest import Manifest
from raywalk.run.pictures import read_picture
from raywalk.run.store import KEYFRAMES, TIMING, RunStore

MODEL_STACK = ("raywalk", "ray", "numpy", "keras", "keras-cv", "tensorflow", "tensorflow-cpu", "pyarrow", "pillow")


def versions() -> dict[str, str]:
    """Installed versions of raywalk and its model stack (absent packages left out)."""
    found = {}
    for name in MODEL_STACK:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def keras_backend_in_use() -> str | None:
    """The Keras backend of this process: Keras' own answer once it is imported, else what it will choose
    (`KERAS_BACKEND`, TensorFlow by default); None where Keras is not installed."""
    keras = sys.modules.get("keras")
    if keras is not None:
        return str(keras.config.backend())
    try:
        metadata.version("keras")
    except metadata.PackageNotFoundError:
        return None
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def device_kind(gpu_ids: list[Any]) -> str:
    """ "cpu" for a worker without GPUs, else the first GPU's name as an already imported framework reports
    it (nothing is imported for it), else "gpu"."""
    if not gpu_ids:
        return "cpu"
    try:
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            return str(sys.modules["torch"].cuda.get_device_name(0))
        if "jax" in sys.modules:
            gpus = [d for d in sys.modules["jax"].devices() if d.platform == "gpu"]
            if gpus:
                return str(gpus[0].device_kind)
        if "tensorflow" in sys.modules:
            tf = sys.modules["tensorflow"]
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return str(tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu"))
    except Exception:  # a framework that cannot say: the kind alone still tells CPU from GPU
        pass
    return "gpu"


def worker_stack(renderer: Any, job: Job, gpu_ids: list[Any]) -> Stack:
    """The model stack of this worker (`raywalk.core.stack.Stack`): raywalk, Keras, KerasCV/KerasHub and the
    library of the Keras backend in use (TensorFlow too where KerasCV is installed: it needs it), the
    renderer's precision (its dtype policy, else the job's) and the device kind."""
    backend = keras_backend_in_use()
    wanted = {"raywalk", "keras", "keras-cv", "keras-hub", *BACKEND_PACKAGES.get(backend or "", ())}
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "keras-cv" in packages:
        wanted |= set(BACKEND_PACKAGES["tensorflow"])
    info = getattr(renderer, "info", {}) or {}
    precision = str(info.get("precision") or job.model.precision)
    return Stack(
        packages={k: v for k, v in packages.items() if k in wanted},
        backend=backend,
        precision=precision,
        device=device_kind(gpu_ids),
    )


def encode_png(image: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """A uint8 (H, W, 3) image as PNG bytes, with `text` as text chunks (tEXt, or iTXt where a value is not
    Latin-1; frame format 2) or none (format 1); the same image and text always give the same bytes."""
    buffer = io.BytesIO()
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6, pnginfo=info)
    return buffer.getvalue()


def render_batch(
    renderer: Renderer, encodings: Encodings, noise: np.ndarray, starts: Starts | None, rows: np.ndarray
) -> np.ndarray:
    """One renderer call: frames of a job without pictures exactly as always (`starts` None), else with the
    `rows` of their starts (the optional capability of `raywalk.renderers.contract.PictureRenderer`)."""
    if starts is None:
        return renderer.render(encodings, noise)
    assert isinstance(renderer, PictureRenderer)  # check_renderer refused a job with pictures for any other
    return renderer.render(encodings, noise, start_latents=starts.latents[rows], start_steps=starts.steps[rows])


class RenderWorker:
    """Hosts one renderer; `render_chunk` turns frame numbers into stored PNGs and index rows."""

    def __init__(self, job: Job, fingerprint: str, uri: str):
        """Build the renderer of `job` (validated by the driver, which computed its `fingerprint` once: a
        worker neither validates nor fingerprints it again) for the run at `uri`.

        Raises:
            RunLocationError: no run at `uri`, seen from this node.
        """
        self.job, self.fingerprint = job, fingerprint
        self.store = RunStore(uri)
        if not self.store.root_exists():
            raise RunLocationError(
                f"{uri}: no run there, seen from {platform.node()} (a local --out must be on storage every node shares)"
            )
        self.renderer = load_renderer(self.job.model)
        self.random_weights = bool(getattr(self.renderer, "random_weights", False))
        warm_up = getattr(self.renderer, "warm_up", None)  # optional: compile before the first chunk
        if callable(warm_up):
            warm_up()
        context = ray.get_runtime_context()
        self.node = context.get_node_id()
        self.worker = context.get_actor_id()
        self.host = platform.node()  # the machine: Ray's node id changes with every Ray session on it
        self.stack = worker_stack(self.renderer, self.job, ray.get_gpu_ids())
        self._trajectory: tuple[tuple[str | None, str | None], Trajectory] | None = None  # (SHA-256s, trajectory)
        self._first_pass: tuple[Renderer, Trajectory] | None = None  # built on the first first-pass call
        self._writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="png")

    def describe(self) -> dict[str, Any]:
        """What this worker runs on: for the run manifest and the logs."""
        return {
            "node": self.node,
            "host": self.host,
            "gpus": ray.get_gpu_ids(),
            "random_weights": self.random_weights,
            "renderer": dict(getattr(self.renderer, "info", {})),
            "versions": versions(),
            "stack": self.stack.to_json(),
        }

    def encode_keyframes(self) -> str:
        """Encode the job's prompts (and pictures, from the run's copies) once and store them for every chunk
        and every resume.

        Returns:
            The SHA-256 of the stored keyframes, for the manifest's `keyframes_sha256`.

        Raises:
            RunError: a picture's copy is missing from the run.
            PictureError: a picture's copy cannot be decoded.
        """
        texts = self.renderer.encode_text(list(self.job.prompts))
        return self.store.write_keyframes(texts, self._encode_pictures(self.renderer, self.job))

    def _encode_pictures(self, renderer: Renderer, job: Job) -> np.ndarray | None:
        """The renderer's latents of `job.pictures` (read from the run's copies, fitted to `job`'s model size),
        or None for a job without pictures."""
        if not job.pictures:
            return None
        fitted = [
            fit_picture(read_picture(self.store, p), job.model.width, job.model.height, p.fit) for p in job.pictures
        ]
        assert isinstance(renderer, PictureRenderer)  # check_renderer refused a job with pictures for any other
        return np.asarray(renderer.encode_images(np.stack(fitted)), dtype=np.float32)

    def render_chunk(self, chunk: int, frames: list[int], attempt: int) -> dict[str, Any]:
        """Render `frames` (all in chunk `chunk`) and write their PNGs, then their index rows.

        Raises:
            RunError: the run now holds another job, or its keyframes are missing or not the manifest's.
            StackChangeError: the run never recorded this worker's stack (its driver did not admit it).
        """
        started = time.perf_counter()
        manifest = self._manifest()
        self._check_stack(manifest)
        trajectory = self._load_trajectory(manifest.keyframes_sha256, manifest.timing_sha256)
        batch = self.job.model.batch_size
        lo = min(frames)
        all_enc, all_noise = trajectory.frames(lo, max(frames) + 1)
        starts = trajectory.starts(lo, max(frames) + 1)
        pick = np.asarray(frames) - lo
        params = trajectory.params(lo, max(frames) + 1)
        at = {frame: {k: v[frame - lo].item() for k, v in params.items()} for frame in frames}
        writes: list[tuple[int, Future, float]] = []
        for b in range(0, len(frames), batch):
            sel = pick[b : b + batch]
            t0 = time.perf_counter()
            images = render_batch(self.renderer, select(all_enc, sel), all_noise[sel], starts, sel)
            per_frame = (time.perf_counter() - t0) / len(sel)
            for frame, image in zip(frames[b : b + batch], images):
                text = (
                    frame_text(self.job, frame, at[frame], self.random_weights) if manifest.frame_format >= 2 else None
                )
                writes.append((frame, self._writer.submit(self._write_frame, frame, image, text), per_frame))
        rows = [
            {**future.result(), "frame": frame, "seconds": seconds, **at[frame]} for frame, future, seconds in writes
        ]
        self._write_index(chunk, rows, attempt, manifest.run_id)
        return {
            "chunk": chunk,
            "frames": len(frames),
            "seconds": time.perf_counter() - started,
            "node": self.node,
            "worker": self.worker,
        }

    def render_first_pass(self, samples: list[int]) -> int:
        """Render first-pass images `samples` (`raywalk.core.pacing.first_pass_job`) into pacing/; returns how many.

        Raises:
            RunError: the run now holds another job, or its keyframes are missing or not the manifest's.
        """
        manifest = self._manifest()
        keyframes, _ = split_pictures(self._keyframes(manifest.keyframes_sha256))
        if self._first_pass is None:
            small = first_pass_job(self.job)
            renderer = load_renderer(small.model)
            pictures = self._encode_pictures(renderer, small)
            trajectory = first_pass_trajectory(self.job, keyframes, renderer.latent_shape[2], pictures)
            self._first_pass = (renderer, trajectory)
        renderer, trajectory = self._first_pass
        batch = self.job.model.batch_size
        for b in range(0, len(samples), batch):
            picked = samples[b : b + batch]
            lo = min(picked)
            encodings, noise = trajectory.frames(lo, max(picked) + 1)
            rows = np.asarray(picked) - lo
            starts = trajectory.starts(lo, max(picked) + 1)
            images = render_batch(renderer, select(encodings, rows), noise[rows], starts, rows)
            for sample, image in zip(picked, images):
                self.store.write_pacing_frame(sample, encode_png(image))
        return len(samples)

    def _manifest(self) -> Manifest:
        """The run's manifest, if it still holds this worker's job.

        Raises:
            RunError: the run now holds another job (this worker's driver was displaced).
        """
        manifest = self.store.require_manifest()
        if manifest.fingerprint != self.fingerprint:
            raise RunError(
                f"{self.store.uri} now holds another job ({manifest.job.name!r}); this worker's "
                "driver was displaced, so it renders nothing more"
            )
        return manifest

    def _check_stack(self, manifest: Manifest) -> None:
        """A worker renders only with a stack the run records (the driver records a stack before it sends
        a chunk to a worker that has it); a run that records none yet (made before stacks) takes any.

        Raises:
            StackChangeError: the run records stacks, and not this worker's.
        """
        if manifest.stack is None or self.stack.id in {r.stack.id for r in manifest.stacks} | {manifest.stack.id}:
            return
        raise StackChangeError(
            f"this worker's stack differs from the run's: {describe_difference(self.stack, manifest.stack)}; "
            "it renders nothing (--allow-stack-change renders anyway)"
        )

    def _keyframes(self, sha256: str | None) -> Encodings:
        """The stored keyframes, which must have the manifest's SHA-256 (if it records one).

        Raises:
            RunError: they are missing, damaged or not the manifest's.
        """
        keyframes = self.store.read_keyframes(sha256)
        if keyframes is None:
            raise RunError(
                f"{self.store.url(KEYFRAMES)} is missing, damaged or not the manifest's keyframes; "
                "rendering again re-encodes the prompts"
            )
        return keyframes

    def _load_trajectory(self, keyframes_sha256: str | None, timing_sha256: str | None) -> Trajectory:
        """The job's trajectory from the stored keyframes and (a job that `needs_table`) walk table, each
        with the manifest's SHA-256: frames rendered from other inputs would be wrong, and counted as done.

        Raises:
            RunError: the keyframes or the table are missing, damaged or not the manifest's.
        """
        key = (keyframes_sha256, timing_sha256)
        if self._trajectory is None or self._trajectory[0] != key:
            keyframes = self._keyframes(keyframes_sha256)
            table = None
            if needs_table(self.job):
                table = self.store.read_timing(timing_sha256)
                if table is None:
                    raise RunError(
                        f"{self.store.url(TIMING)} is missing, damaged or not the manifest's walk table; "
                        "rendering again measures it"
                    )
            texts, pictures = split_pictures(keyframes)
            trajectory = Trajectory(
                self.job, texts, timing=table, latent_shape=self.renderer.latent_shape, pictures=pictures
            )
            self._trajectory = (key, trajectory)
        return self._trajectory[1]

    def _write_frame(self, frame: int, image: np.ndarray, text: Mapping[str, str] | None) -> dict[str, Any]:
        """Write a frame's PNG (with `text`: frame format 2); returns its index fields."""
        written = self.store.write_frame(frame, encode_png(image, text))
        parameters = text[TEXT_KEY] if text else None
        return {**written, "height": int(image.shape[0]), "width": int(image.shape[1]), "parameters": parameters}

    def _write_index(self, chunk: int, rows: list[dict[str, Any]], attempt: int, run_id: str) -> None:
        """A file of its own with the rows of the frames this attempt rendered: nothing is read or merged, so
        no other attempt's rows can be lost (the store's invariant 2)."""
        new = sorted(
            (
                {**r, "chunk": chunk, "attempt": attempt, "node": self.node, "worker": self.worker, "host": self.host}
                for r in rows
            ),
            key=lambda r: r["frame"],
        )
        self.store.write_chunk_index(
            chunk,
            {k: [r[k] for r in new] for k in new[0]},
            run_id=run_id,
            fingerprint=self.fingerprint,
            stack=self.stack.id,
        )
