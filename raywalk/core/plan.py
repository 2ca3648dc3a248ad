"""What a job will cost: frames, chunks, batches, UNet evaluations, files, time.

Pure arithmetic over a `Job`; nothing is loaded and nothing runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raywalk.core.pacing import first_pass_job
from raywalk.core.spec import Job

GUIDANCE_PASSES = 2  # classifier-free guidance: a conditional and an unconditional pass
# The denoising network of each shipped renderer, and whether it skips guidance at a scale of 1 or less
# (KerasHub's SD3 sampler does, as SD3.5 Large Turbo's 4 steps at guidance 0 use; KerasCV's never does).
DENOISERS: dict[str, tuple[str, bool]] = {
    "raywalk.kerascv:KerasCVRenderer": ("UNet", False),
    "raywalk.kerashub:StableDiffusion3Renderer": ("MMDiT", True),
}


def denoiser(job: Job) -> tuple[str, int]:
    """(the name of the job's denoising network, its passes per step): "UNet" for renderers raywalk does not
    know, 2 guidance passes unless the renderer skips guidance at this scale."""
    name, skips = DENOISERS.get(job.model.renderer, ("UNet", False))
    return name, 1 if skips and job.model.guidance_scale <= 1 else GUIDANCE_PASSES


@dataclass(frozen=True)
class Plan:
    frames: int
    chunks: int
    chunk_size: int
    batch_size: int
    chunk_batches: tuple[int, ...]  # renderer calls of batch_size frames per chunk, the last padded
    steps: int
    passes: int = GUIDANCE_PASSES  # denoiser evaluations per frame and step

    @property
    def batches(self) -> int:
        return sum(self.chunk_batches)

    @property
    def padded_frames(self) -> int:
        return self.batches * self.batch_size

    @property
    def unet_evaluations(self) -> int:
        """Per-image denoiser (UNet or MMDiT) evaluations, padding and guidance passes included."""
        return self.padded_frames * self.steps * self.passes


@dataclass(frozen=True)
class Estimate:
    workers: int
    seconds_per_step: float  # one denoising step of one batch on one worker
    wall_seconds: float
    gpu_hours: float


def make_plan(job: Job) -> Plan:
    """Count the work of a job as the driver will split it."""
    batch = job.model.batch_size
    return Plan(
        frames=job.num_frames,
        chunks=job.num_chunks,
        chunk_size=job.chunking.chunk_size,
        batch_size=batch,
        chunk_batches=tuple(math.ceil(len(job.chunk_frames(c)) / batch) for c in range(job.num_chunks)),
        steps=job.model.steps,
        passes=denoiser(job)[1],
    )


def first_pass_plan(job: Job) -> Plan | None:
    """The work of a perceptually paced job's first pass (`raywalk.core.pacing.first_pass_job`), or None without one.

    Its frames are `segments x (samples - 1) + 1` images of `pacing.size` pixels wide at `pacing.steps`
    steps, batched and chunked like the job's own; each UNet evaluation costs about
    (pacing.size / model.width)² of a full-size one.
    """
    return make_plan(first_pass_job(job)) if job.pacing is not None else None


def estimate(job: Job, plan: Plan, seconds_per_step: float, workers: int) -> Estimate:
    """Expected wall time and GPU-hours with `workers` renderers of `seconds_per_step`.

    Chunks are the unit handed to workers, so the wall time is that of the
    busiest worker when whole chunks are dealt out; GPU-hours count every
    worker's reserved GPUs for that long.
    """
    if seconds_per_step <= 0 or workers < 1:
        raise ValueError("seconds per step must be > 0 and workers >= 1")
    loads = [0] * workers
    for batches in sorted(plan.chunk_batches, reverse=True):  # longest first onto the least loaded worker
        loads[loads.index(min(loads))] += batches
    wall = max(loads) * plan.steps * seconds_per_step
    gpus = job.workers.gpus if job.workers.gpus > 0 else 0.0
    return Estimate(workers, seconds_per_step, wall, wall * workers * gpus / 3600.0)
