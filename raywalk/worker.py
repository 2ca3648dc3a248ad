"""The Ray actor that hosts one renderer and renders chunks into the run directory.

One actor per GPU: the model is built once in the constructor and reused for
every chunk. A chunk's frames come from the pure trajectory, are rendered in
batches, and their PNGs are encoded and written on a thread while the next
batch renders. The chunk's Parquet index is written last, so a frame counts as
done only once both its PNG and its index row exist. Writes are idempotent:
a retried chunk overwrites the same names with the same bytes.
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

from raywalk.errors import RunError
from raywalk.renderer import load_renderer
from raywalk.spec import job_from_dict
from raywalk.trajectory import Trajectory
from raywalk.store import RunStore

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
        self.store = RunStore(uri, create=False)
        self.renderer = load_renderer(self.job.model)
        warm_up = getattr(self.renderer, "warm_up", None)  # optional: compile before the first chunk
        if callable(warm_up):
            warm_up()
        context = ray.get_runtime_context()
        self.node = context.get_node_id()
        self.worker = context.get_actor_id()
        self._trajectory = None
        self._writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="png")

    def describe(self) -> dict[str, Any]:
        """What this worker runs on: for the run manifest and the logs."""
        return {
            "node": self.node,
            "host": platform.node(),
            "gpus": ray.get_gpu_ids(),
            "random_weights": bool(getattr(self.renderer, "random_weights", False)),
            "renderer": dict(getattr(self.renderer, "info", {})),
            "versions": versions(),
        }

    def encode_keyframes(self) -> tuple[int, ...]:
        """Encode the job's prompts once and store them for every chunk and every resume."""
        keyframes = np.asarray(self.renderer.encode_text(list(self.job.prompts)), dtype=np.float32)
        self.store.write_keyframes(keyframes)
        return keyframes.shape

    def render_chunk(self, chunk: int, frames: list[int], attempt: int) -> dict[str, Any]:
        """Render `frames` (all in chunk `chunk`) and write their PNGs, then the chunk's index."""
        started = time.perf_counter()
        trajectory = self._load_trajectory()
        batch = self.job.model.batch_size
        lo = min(frames)
        all_enc, all_noise = trajectory.frames(lo, max(frames) + 1)
        pick = np.asarray(frames) - lo
        writes: list[tuple[int, Future, float]] = []
        for b in range(0, len(frames), batch):
            sel = pick[b:b + batch]
            t0 = time.perf_counter()
            images = self.renderer.render(all_enc[sel], all_noise[sel])
            per_frame = (time.perf_counter() - t0) / len(sel)
            for frame, image in zip(frames[b:b + batch], images):
                writes.append((frame, self._writer.submit(self._write_frame, frame, image), per_frame))
        params = trajectory.params(lo, max(frames) + 1)
        rows = [{**future.result(), "frame": frame, "seconds": seconds,
                 **{k: v[frame - lo].item() for k, v in params.items()}}
                for frame, future, seconds in writes]
        self._write_index(chunk, rows, attempt)
        return {"chunk": chunk, "frames": len(frames), "seconds": time.perf_counter() - started,
                "node": self.node, "worker": self.worker}

    def _load_trajectory(self):
        if self._trajectory is None:
            keyframes = self.store.read_keyframes()
            if keyframes is None:
                raise RunError(f"{self.store.url('keyframes.npy')} is missing: the driver encodes prompts first")
            self._trajectory = Trajectory(self.job, keyframes)
        return self._trajectory

    def _write_frame(self, frame: int, image: np.ndarray) -> dict[str, Any]:
        written = self.store.write_frame(frame, encode_png(image))
        return {**written, "height": int(image.shape[0]), "width": int(image.shape[1])}

    def _write_index(self, chunk: int, rows: list[dict[str, Any]], attempt: int) -> None:
        """The chunk's index: rows kept from earlier attempts for frames not redone, plus the new ones."""
        keep = set(self.job.chunk_frames(chunk)) - {r["frame"] for r in rows}
        previous = self.store.read_chunk_index(chunk)
        kept = [] if previous is None else [r for r in previous.to_pylist() if r["frame"] in keep]
        new = [{**r, "chunk": chunk, "attempt": attempt, "node": self.node, "worker": self.worker} for r in rows]
        merged = sorted(kept + new, key=lambda r: r["frame"])
        self.store.write_chunk_index(chunk, {k: [r[k] for r in merged] for k in merged[0]})
