"""What a job will cost: frames, chunks, batches, UNet evaluations, files, time.

Pure arithmetic over a `Job`; nothing is loaded and nothing runs. A job that
starts from pictures also costs one VAE encoding per picture (per renderer:
the perceptual first pass encodes them again at its size), and saves the
denoiser evaluations of the steps its frames skip by starting late
(`raywalk.core.trajectory.start_step`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from raywalk.core.job import Job
from raywalk.core.pacing import first_pass_job
from raywalk.core.trajectory import Trajectory

GUIDANCE_PASSES = 2  # classifier-free guidance: a conditional and an unconditional pass


@dataclass(frozen=True)
class Denoiser:
    """A renderer's denoising network as a plan counts it; the caller fills it from the renderer class.

    `guidance_optional`: the renderer runs one pass per step at a guidance scale of 1 or less (KerasHub's
    SD3 sampler does, as SD3.5 Large Turbo's 4 steps at guidance 0 use; KerasCV's never does).
    """

    name: str = "UNet"
    guidance_optional: bool = False

    @classmethod
    def of(cls, renderer: object) -> Denoiser:
        """From a renderer class's (or traits') `denoiser` and `guidance_optional`; defaults where absent."""
        return cls(
            name=str(getattr(renderer, "denoiser", cls.name)),
            guidance_optional=bool(getattr(renderer, "guidance_optional", cls.guidance_optional)),
        )

    def passes(self, job: Job) -> int:
        """Denoiser evaluations per frame and step: 2 guidance passes unless guidance is off at this scale."""
        return 1 if self.guidance_optional and job.model.guidance_scale <= 1 else GUIDANCE_PASSES


UNET = Denoiser()  # a renderer that says nothing of its denoiser: KerasCV's Stable Diffusion UNet


@dataclass(frozen=True)
class Plan:
    frames: int
    chunks: int
    chunk_size: int
    batch_size: int
    chunk_batches: tuple[int, ...]  # renderer calls of batch_size frames per chunk, the last padded
    steps: int
    passes: int = GUIDANCE_PASSES  # denoiser evaluations per frame and step
    encodings: int = 0  # VAE encodings of the job's pictures, one each
    saved: int = 0  # denoiser evaluations the frames skip by starting late: sum of start steps x passes

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


def make_plan(job: Job, denoiser: Denoiser = UNET) -> Plan:
    """Count the work of a job as the driver will split it, for a renderer of `denoiser`."""
    batch = job.model.batch_size
    return Plan(
        frames=job.num_frames,
        chunks=job.num_chunks,
        chunk_size=job.chunking.chunk_size,
        batch_size=batch,
        chunk_batches=tuple(math.ceil(len(job.chunk_frames(c)) / batch) for c in range(job.num_chunks)),
        steps=job.model.steps,
        passes=denoiser.passes(job),
        encodings=len(job.pictures),
        saved=skipped_steps(job) * denoiser.passes(job),
    )


def skipped_steps(job: Job) -> int:
    """The denoising steps a job's frames skip by starting from pictures: the sum of their starting steps (at the
    keyframes' times; a walk table measured later moves frames within segments, so for a timed or perceptually
    paced job this is the count before it)."""
    if not job.pictures:
        return 0
    texts = np.zeros((len(job.prompts), 1))  # the walk parameters need no encodings
    return int(Trajectory(job, texts).params(0, job.num_frames)["start_step"].sum())


def first_pass_plan(job: Job, denoiser: Denoiser = UNET) -> Plan | None:
    """The work of a perceptually paced job's first pass (`raywalk.core.pacing.first_pass_job`), or None without one.

    Its frames are `segments x (samples - 1) + 1` images of `pacing.size` pixels wide at `pacing.steps`
    steps, batched and chunked like the job's own; each UNet evaluation costs about
    (pacing.size / model.width)² of a full-size one.
    """
    return make_plan(first_pass_job(job), denoiser) if job.pacing is not None else None


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
