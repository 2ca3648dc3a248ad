"""The `raywalk` command line: plan, render, resume, status, assemble, weights."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from raywalk.plan import estimate, make_plan
from raywalk.spec import Job, JobError, load_job

BAD_INPUT = 2  # a job, path or option that cannot be used: nothing was written


class _Group(click.Group):
    """Turns raywalk's own errors into one line on stderr and an exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (JobError, ValueError, FileNotFoundError) as exc:
            click.echo(f"raywalk: error: {exc}", err=True)
            sys.exit(BAD_INPUT)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="raywalk")
def main() -> None:
    """Render Stable Diffusion latent-space walks on a Ray cluster.

    A job file (YAML) says what to render; `plan` checks it and counts the
    work, `render` runs it on Ray into a run directory (local or s3://, gs://),
    `resume` finishes what is missing, `assemble` builds GIF/MP4/grid outputs.
    """


@main.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seconds-per-step", type=float, help="Time of one denoising step of one batch, for an estimate.")
@click.option("--workers", type=int, default=1, show_default=True, help="Workers assumed by the estimate.")
def plan(job_file: Path, seconds_per_step: float | None, workers: int) -> None:
    """Validate JOB_FILE and print the work it asks for, without loading a model or starting Ray."""
    job = load_job(job_file)
    from raywalk.renderer import check_renderer

    check_renderer(job.model, list(job.prompts))
    click.echo(describe(job, seconds_per_step, workers))


def describe(job: Job, seconds_per_step: float | None = None, workers: int = 1) -> str:
    """The plan of a job as the lines `raywalk plan` prints."""
    p = make_plan(job)
    m, w, n = job.model, job.walk, job.noise
    walk = {
        "interpolate": f"{w.method}, {w.easing} easing{', loops back' if w.loop else ''}",
        "grid": f"{w.size}x{w.size}, {w.method}, {w.easing} easing",
        "text_walk": f"step {w.step_size}, direction {w.direction}",
        "noise_circle": f"{w.mode} circle",
    }[w.kind]
    last = p.frames - 1
    lines = [
        f"job               {job.name} ({job.source}), fingerprint {job.fingerprint()[:12]}",
        f"prompts           {len(job.prompts)}: " + " | ".join(job.prompts),
        f"walk              {w.kind}: {walk}",
        f"noise             {n.kind}, seed {n.seed}",
        f"model             {m.renderer} {m.width}x{m.height}, {m.steps} steps, guidance {m.guidance_scale}, "
        f"weights {m.weights}, precision {m.precision}",
        f"frames            {p.frames}",
        f"chunks            {p.chunks} of up to {p.chunk_size} frames",
        f"batches           {p.batches} of {p.batch_size} ({p.padded_frames - p.frames} padding frames)",
        f"UNet evaluations  {p.unet_evaluations} ({p.padded_frames} frames x {p.steps} steps x 2 guidance passes)",
        "files             manifest.json, keyframes.npy, "
        f"frames/{_frame_name(0)} .. frames/{_frame_name(last)}, "
        f"index/chunk-000000.parquet .. index/chunk-{p.chunks - 1:06d}.parquet",
    ]
    if job.outputs.files:
        lines.append("outputs           " + ", ".join(job.output_files().values()))
    if seconds_per_step is not None:
        e = estimate(job, p, seconds_per_step, workers)
        lines.append(
            f"estimate          {_duration(e.wall_seconds)} wall on {e.workers} worker(s) at "
            f"{e.seconds_per_step:g} s/step, {e.gpu_hours:.2f} GPU-hours"
        )
    return "\n".join(lines)


def _frame_name(frame: int) -> str:
    from raywalk.store import frame_name

    return frame_name(frame)


def _duration(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h{rest // 60:02d}m{rest % 60:02d}s"
