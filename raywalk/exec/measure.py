"""The walk table of a timed run, measured from what the run holds: the I/O edge of `raywalk.core.timing`.

Runs in a Ray task (CPU only), never in the driver: it decodes the run's copy
of the soundtrack (`raywalk.outputs.audio.envelope`) and the perceptual first pass's
images (`raywalk.core.pacing.distances`), then stores `raywalk.core.timing.job_table`
as the run's `timing.npy`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

from raywalk.core.job import Job
from raywalk.core.pacing import distances, first_pass_job
from raywalk.core.timing import job_table
from raywalk.errors import RunError
from raywalk.outputs.audio import envelope
from raywalk.run.store import PACING, RunStore, soundtrack_name


def first_pass_images(store: RunStore, count: int) -> Iterator[np.ndarray]:
    """The first pass's `count` images in order, decoded one at a time.

    Raises:
        RunError: an image is missing or cannot be decoded.
    """
    for sample in range(count):
        try:
            png = store.read_pacing_frame(sample)
            yield np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        except (FileNotFoundError, OSError, SyntaxError, ValueError) as exc:
            raise RunError(
                f"first-pass image {store.url(PACING)}/{sample:06d}.png is missing or damaged: {exc}"
            ) from None


def measure_table(store: RunStore, job: Job) -> str:
    """Measure the walk table of `job` (one that `raywalk.core.timing.needs_table`) from the run's soundtrack copy
    and first-pass images, and store it; returns its SHA-256 for the manifest's `timing_sha256`.

    Raises:
        AudioError: the run's soundtrack copy cannot be decoded.
        RunError: the soundtrack copy or a first-pass image is missing.
    """
    measured = None
    name = soundtrack_name(job)
    if name is not None:
        try:
            with store.local_file(name) as path:
                measured = envelope(path)
        except FileNotFoundError:
            raise RunError(f"{store.url(name)} is missing; rendering the job again copies it in") from None
    first_pass = None
    if job.pacing is not None:
        first_pass = distances(first_pass_images(store, first_pass_job(job).num_frames))
    return store.write_timing(job_table(job, envelope=measured, first_pass_distances=first_pass))
