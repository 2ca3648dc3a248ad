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
keyframes whose SHA-256 is not the manifest's.
"""

from __future__ import annotations

import io
import platform
import time
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from typing import Any

import numpy as np
import ray
from PIL import Image

from raywalk.errors import RunError, RunLocationError
from raywalk.renderer import load_renderer
from raywalk.spec import job_from_dict
from raywalk.store import KEYFRAMES, RunStore
from raywalk.trajectory import Trajectory, select

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


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 (H, W, 3) image as PNG bytes; the same image always gives the same bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


class RenderWorker:
    """Hosts one renderer; `render_chunk` turns frame numbers into stored PNGs and index rows."""

    def __init__(self, job_data: dict[str, Any], uri: str):
        self.job = job_from_dict(job_data, source="run manifest")
        self.store = RunStore(uri)
        if not self.store.root_exists():
            raise RunLocationError(
                f"{uri}: no run there, seen from {platform.node()} (a local --out must be on storage every node shares)"
            )
        self.renderer = load_renderer(self.job.model)
        warm_up = getattr(self.renderer, "warm_up", None)  # optional: compile before the first chunk
        if callable(warm_up):
            warm_up()
        context = ray.get_runtime_context()
        self.node = context.get_node_id()
        self.worker = context.get_actor_id()
        self.host = platform.node()  # the machine: Ray's node id changes with every Ray session on it
        self._trajectory: tuple[str | None, Trajectory] | None = None  # (keyframes SHA-256, trajectory)
        self._writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="png")

    def describe(self) -> dict[str, Any]:
        """What this worker runs on: for the run manifest and the logs."""
        return {
            "node": self.node,
            "host": self.host,
            "gpus": ray.get_gpu_ids(),
            "random_weights": bool(getattr(self.renderer, "random_weights", False)),
            "renderer": dict(getattr(self.renderer, "info", {})),
            "versions": versions(),
        }

    def encode_keyframes(self) -> str:
        """Encode the job's prompts once and store them for every chunk and every resume.

        Returns:
            The SHA-256 of the stored keyframes, for the manifest's `keyframes_sha256`.
        """
        return self.store.write_keyframes(self.renderer.encode_text(list(self.job.prompts)))

    def render_chunk(self, chunk: int, frames: list[int], attempt: int) -> dict[str, Any]:
        """Render `frames` (all in chunk `chunk`) and write their PNGs, then their index rows.

        Raises:
            RunError: the run now holds another job, or its keyframes are missing or not the manifest's.
        """
        started = time.perf_counter()
        manifest = self.store.require_manifest()
        if manifest.fingerprint != self.job.fingerprint():
            raise RunError(
                f"{self.store.uri} now holds another job ({manifest.job.name!r}); this worker's "
                "driver was displaced, so it renders nothing more"
            )
        trajectory = self._load_trajectory(manifest.keyframes_sha256)
        batch = self.job.model.batch_size
        lo = min(frames)
        all_enc, all_noise = trajectory.frames(lo, max(frames) + 1)
        pick = np.asarray(frames) - lo
        writes: list[tuple[int, Future, float]] = []
        for b in range(0, len(frames), batch):
            sel = pick[b : b + batch]
            t0 = time.perf_counter()
            images = self.renderer.render(select(all_enc, sel), all_noise[sel])
            per_frame = (time.perf_counter() - t0) / len(sel)
            for frame, image in zip(frames[b : b + batch], images):
                writes.append((frame, self._writer.submit(self._write_frame, frame, image), per_frame))
        params = trajectory.params(lo, max(frames) + 1)
        rows = [
            {
                **future.result(),
                "frame": frame,
                "seconds": seconds,
                **{k: v[frame - lo].item() for k, v in params.items()},
            }
            for frame, future, seconds in writes
        ]
        self._write_index(chunk, rows, attempt, manifest.run_id)
        return {
            "chunk": chunk,
            "frames": len(frames),
            "seconds": time.perf_counter() - started,
            "node": self.node,
            "worker": self.worker,
        }

    def _load_trajectory(self, sha256: str | None) -> Trajectory:
        """The job's trajectory from the stored keyframes, which must have the manifest's SHA-256 (if it
        records one): frames rendered from other encodings would be wrong, and counted as done."""
        if self._trajectory is None or self._trajectory[0] != sha256:
            keyframes = self.store.read_keyframes(sha256)
            if keyframes is None:
                raise RunError(
                    f"{self.store.url(KEYFRAMES)} is missing, damaged or not the manifest's keyframes; "
                    "rendering again re-encodes the prompts"
                )
            self._trajectory = (sha256, Trajectory(self.job, keyframes, latent_shape=self.renderer.latent_shape))
        return self._trajectory[1]

    def _write_frame(self, frame: int, image: np.ndarray) -> dict[str, Any]:
        written = self.store.write_frame(frame, encode_png(image))
        return {**written, "height": int(image.shape[0]), "width": int(image.shape[1])}

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
            chunk, {k: [r[k] for r in new] for k in new[0]}, run_id=run_id, fingerprint=self.job.fingerprint()
        )
