"""Calibration: measure one denoising step of one batch on one worker, for plan estimates.

The measurement runs in a Ray task with a worker's resources (its GPU), so it
times the hardware the job will render on, and the driver never imports the model.
"""

from __future__ import annotations

import time
from typing import Any

import ray

from raywalk.core.job import Job
from raywalk.core.spec import job_from_dict
from raywalk.core.trajectory import Trajectory
from raywalk.exec.cluster import WorkerSpec, connect, worker_resources
from raywalk.renderers.contract import load_renderer


def calibrate(job: Job, address: str | None = None) -> float:
    """Seconds per denoising step of one `batch_size` batch of `job`, on one worker."""
    connect(address, job.model.renderer)
    request = worker_resources(job, WorkerSpec(count=1))
    task = ray.remote(_measure).options(num_gpus=request.gpus, num_cpus=request.cpus, max_retries=0)
    return ray.get(task.remote(job.to_dict()))


def _measure(job_data: dict[str, Any]) -> float:
    job = job_from_dict(job_data, source="calibration")
    renderer = load_renderer(job.model)
    trajectory = Trajectory(job, renderer.encode_text(list(job.prompts)), latent_shape=renderer.latent_shape)
    batch = min(job.model.batch_size, job.num_frames)
    encodings, noise = trajectory.frames(0, batch)
    renderer.render(encodings, noise)  # the first call builds and compiles the graphs
    started = time.perf_counter()
    renderer.render(encodings, noise)
    return (time.perf_counter() - started) / job.model.steps
