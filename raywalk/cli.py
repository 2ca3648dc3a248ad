"""The `raywalk` command line: plan, render, resume, status, assemble, weights, report."""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import traceback
from pathlib import Path

import click

from raywalk.core.job import Job
from raywalk.core.limits import MAX_WORKERS
from raywalk.core.pacing import first_pass_job
from raywalk.core.plan import Denoiser, estimate, first_pass_plan, make_plan
from raywalk.core.timing import needs_table
from raywalk.errors import INCOMPLETE, INTERNAL, RaywalkError, one_line
from raywalk.jobfile import load_job
from raywalk.run.store import RunStore, frame_name, frame_ranges, soundtrack_name


def _log_traceback() -> str:
    """Write the current exception's traceback to a file of its own; returns the file's path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(tempfile.gettempdir(), f"raywalk-error-{stamp}-{os.getpid()}.log")
    with open(path, "w", encoding="utf-8") as log:
        log.write(f"raywalk {' '.join(sys.argv[1:])}\n")
        traceback.print_exc(file=log)
    return path


class _Group(click.Group):
    """Turns raywalk's errors into one line on stderr and their exit status (see `raywalk.errors`)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own: --help, usage errors (exit 2), Ctrl-C
        except RaywalkError as exc:
            click.echo(f"raywalk: {exc.label}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a bug: one line, the traceback in a file
            where = _log_traceback()
            click.echo(
                f"raywalk: internal error: {type(exc).__name__}: {one_line(exc)[:300]} "
                f"(a bug in raywalk; traceback in {where})",
                err=True,
            )
            sys.exit(INTERNAL)


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
@click.option(
    "--seconds-per-step",
    type=click.FloatRange(min=0, min_open=True),
    help="Time of one denoising step of one batch on one worker, for an estimate.",
)
@click.option("--calibrate", is_flag=True, help="Measure --seconds-per-step by rendering one batch on one Ray worker.")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Workers assumed by the estimate."
)
@click.option("--address", help="Ray cluster to calibrate on (default: a local Ray).")
def plan(job_file: Path, seconds_per_step: float | None, calibrate: bool, workers: int, address: str | None) -> None:
    """Validate JOB_FILE and print the work it asks for, without loading a model or starting Ray.

    With --seconds-per-step (or --calibrate, which does start Ray and load the
    model on one worker) it also prints the expected wall time and GPU-hours.
    """
    job = load_job(job_file)
    from raywalk.exec.cluster import ensure_cwd_importable
    from raywalk.renderers.contract import check_renderer

    ensure_cwd_importable()  # find a renderer module beside the job as the workers will (render ships it)
    notes = check_renderer(job.model, list(job.prompts), strict=False, pictures=len(job.pictures))
    if calibrate:
        from raywalk.exec.calibrate import calibrate as measure

        seconds_per_step = measure(job, address)
    click.echo(describe(job, seconds_per_step, workers))
    for note in notes:
        click.echo(f"unchecked         {note}")


def describe(job: Job, seconds_per_step: float | None = None, workers: int = 1) -> str:
    """The plan of a job as the lines `raywalk plan` prints."""
    from raywalk.renderers.contract import renderer_class

    denoiser = Denoiser.of(renderer_class(job.model.renderer))  # its class attributes: denoiser, guidance_optional
    p = make_plan(job, denoiser)
    net = denoiser.name
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
        f"{f'{net} evaluations':17} {p.unet_evaluations} ({p.padded_frames} frames x {p.steps} steps x "
        f"{p.passes} guidance pass{'es' if p.passes > 1 else ''})",
        "files             manifest.json, keyframes.npz, "
        + (f"frames/{frame_name(0)}" if last == 0 else f"frames/{frame_name(0)} .. frames/{frame_name(last)}")
        + f" ({p.frames} PNG{'s' if p.frames > 1 else ''}), index/ (a Parquet file per chunk rendered)"
        + (", timing.npy (the walk table)" if needs_table(job) else "")
        + (f", {soundtrack_name(job)} (a copy)" if soundtrack_name(job) else "")
        + (f", pictures/ ({len(job.pictures)} cop{'ies' if len(job.pictures) > 1 else 'y'})" if job.pictures else "")
        + (", pacing/ (the first pass)" if job.pacing is not None else ""),
    ]
    if job.outputs.files:
        lines.append("outputs           " + ", ".join(job.output_files().values()))
    first = first_pass_plan(job, denoiser)
    if job.pictures:
        lines.append(
            f"pictures          {len(job.pictures)}: "
            + " | ".join(
                f"{pic.image} ({pic.width}x{pic.height}, {pic.fit}, strength {pic.strength:g})" for pic in job.pictures
            )
        )
        encodings = p.encodings + (first.encodings if first is not None else 0)
        lines.append(
            f"starting late     {encodings} VAE encoding{'s' if encodings != 1 else ''}"
            + (f" ({first.encodings} of them the first pass's)" if first is not None else "")
            + f"; {p.saved} {net} evaluations saved ({p.saved / max(p.unet_evaluations, 1):.1%} of them)"
            + (" before the walk table is measured" if needs_table(job) else "")
        )
    if first is not None:
        small = first_pass_job(job).model
        lines.append(
            f"first pass        {first.frames} frames at {small.width}x{small.height}, {first.steps} steps: "
            f"{first.unet_evaluations} {net} evaluations of {(small.width / m.width) ** 2:.3g} the pixels "
            "(perceptual pacing)" + (f", {first.saved} saved by starting late" if first.saved else "")
        )
    if seconds_per_step is not None:
        e = estimate(job, p, seconds_per_step, workers)
        lines.append(
            f"estimate          {_duration(e.wall_seconds)} wall on {e.workers} worker(s) at "
            f"{e.seconds_per_step:g} s/step, {e.gpu_hours:.2f} GPU-hours"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h{rest // 60:02d}m{rest % 60:02d}s"


_render_options = [
    click.option("--address", help="Ray cluster to join ('auto', 'ray://host:10001'); default: start a local Ray."),
    click.option(
        "--workers",
        type=click.IntRange(min=1, max=MAX_WORKERS),
        help=f"Renderer actors (default: one per GPU; at most {MAX_WORKERS}).",
    ),
    click.option("--gpus-per-worker", type=click.FloatRange(min=0), help="GPUs each worker reserves (0.5 shares one)."),
    click.option("--cpus-per-worker", type=click.FloatRange(min=0), help="CPUs each worker reserves."),
    click.option("--verify", is_flag=True, help="Rehash every stored frame instead of trusting file sizes."),
    click.option(
        "--start-timeout",
        type=click.FloatRange(min=0),
        default=600,
        show_default=True,
        help="Seconds to wait for a node that can host a worker on a joined cluster, then give up (exit 1).",
    ),
    click.option(
        "--watchdog",
        type=click.FloatRange(min=1),
        default=900,
        show_default=True,
        help="Seconds without a finished chunk before a 'stalled' event (repeated while it lasts).",
    ),
    click.option(
        "--allow-stack-change",
        is_flag=True,
        help="Render even with workers whose model stack (package versions, Keras backend, precision, device "
        "kind) is not the run's; the manifest records it.",
    ),
]


def render_options(command):
    for option in reversed(_render_options):
        command = option(command)
    return command


@main.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "uri", required=True, help="Run directory: a path, s3://bucket/prefix or gs://bucket/prefix.")
@click.option("--force", is_flag=True, help="Render over an output that holds a run of another job.")
@render_options
def render(job_file: Path, uri: str, force: bool, **options) -> None:
    """Render JOB_FILE into the run directory --out; run again (or `resume`) to finish what is missing.

    S3-compatible stores take their endpoint in the URI, e.g.
    s3://bucket/run?endpoint_override=host:9000&scheme=http.
    """
    from raywalk.exec.location import open_location

    job = load_job(job_file)
    store = open_location(uri)
    if not _nothing_to_do(store, job, uri, options["verify"]):
        from raywalk.exec import driver

        _finish(driver.render(job, uri, store=store, force=force, **_driver_options(**options)))


@main.command()
@click.argument("uri")
@render_options
def resume(uri: str, **options) -> None:
    """Finish the run at URI: render only the frames it lacks, then assemble its outputs."""
    store = RunStore(uri, create=False)
    job = store.read_job()
    if not _nothing_to_do(store, job, uri, options["verify"]):
        from raywalk.exec import driver

        _finish(driver.render(job, uri, store=store, **_driver_options(**options)))


def _nothing_to_do(store: RunStore, job: Job, uri: str, verify: bool) -> bool:
    """Whether the run is finished with every product current (`raywalk.run.current`): then the render's
    summary is printed at once, without importing Ray, a renderer or matplotlib (a no-op in under a second)."""
    from raywalk.exec.progress import Progress
    from raywalk.run.current import finished

    if not finished(store, job, verify):
        return False
    Progress(job.num_frames, job.num_frames).close()  # the full bar a render draws on a terminal
    _done(job.num_frames, uri, [])
    return True


def _driver_options(
    address, workers, gpus_per_worker, cpus_per_worker, verify, start_timeout, watchdog, allow_stack_change
) -> dict:
    """The driver's keyword arguments from the shared render options."""
    from raywalk.exec.driver import WorkerSpec

    spec = WorkerSpec(count=workers, gpus=gpus_per_worker, cpus=cpus_per_worker)
    return {
        "address": address,
        "workers": spec,
        "verify": verify,
        "start_timeout": start_timeout,
        "watchdog": watchdog,
        "allow_stack_change": allow_stack_change,
    }


def _done(num_frames: int, uri: str, outputs: list[str]) -> None:
    """The last line of a render or resume that left every frame done."""
    click.echo(f"raywalk: {num_frames} frames in {uri}" + (f"; outputs: {', '.join(outputs)}" if outputs else ""))


def _finish(outcome) -> None:
    if outcome.complete:
        _done(outcome.num_frames, outcome.uri, outcome.outputs)
        return
    click.echo(
        f"raywalk: {len(outcome.missing)} of {outcome.num_frames} frames missing "
        f"({frame_ranges(outcome.missing)}); finish with: {outcome.resume_command()}",
        err=True,
    )
    sys.exit(INCOMPLETE)


@main.command()
@click.argument("uri")
@click.option("--verify", is_flag=True, help="Rehash every stored frame instead of trusting file sizes.")
def status(uri: str, verify: bool) -> None:
    """Frames done, missing and failed in the run at URI, and seconds per frame per worker."""
    from raywalk.report.status import run_status

    click.echo(run_status(uri, verify=verify))


@main.command()
@click.argument("uri")
@click.option("--partial", is_flag=True, help="Build the outputs from the frames done so far.")
def assemble(uri: str, partial: bool) -> None:
    """Build the job's outputs (GIF, MP4, grid, contact sheet) from the run at URI, in frame order."""
    from raywalk.outputs.assemble import assemble_run

    for line in assemble_run(uri, partial=partial):
        click.echo(line)


@main.group()
def weights() -> None:
    """Model weights for clusters without internet."""


@weights.command("stage")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--version",
    "version",
    type=click.Choice(["v1.4", "v2.1"]),
    default="v1.4",
    show_default=True,
    help="KerasCV Stable Diffusion version.",
)
@click.option(
    "--preset",
    help="Stage a KerasHub preset instead (e.g. stable_diffusion_3_medium, a kaggle:// or "
    "hf:// handle, or a local preset directory).",
)
def stage(directory: Path, version: str, preset: str | None) -> None:
    """Download and verify model weights into DIRECTORY (then set weights: DIRECTORY): the KerasCV weights and
    CLIP vocabulary, or with --preset a KerasHub preset, checked by SHA-256 on every load."""
    if preset:
        from raywalk.renderers.sd3 import stage_preset

        stage_preset(directory, preset)
        click.echo(f"raywalk: preset {preset} staged in {directory}")
        return
    from raywalk.renderers.weights import stage_weights

    stage_weights(directory, version)
    click.echo(f"raywalk: {version} weights staged in {directory}")


@main.command()
@click.argument("uri")
@click.option("--open", "open_page", is_flag=True, help="Open the report in a web browser (local runs).")
def report(uri: str, open_page: bool) -> None:
    """Write report.html, a page about the run at URI that reads offline, and print where it is.

    One self-contained file (job, outputs, progress, failures, throughput,
    seconds per frame, walk, commands) for any run, finished or not.
    """
    import webbrowser

    from raywalk.report.page import write_report

    store = RunStore(uri, create=False)
    url = write_report(store)
    click.echo(url)
    if not open_page:
        return
    if not store.local:
        click.echo("raywalk: --open needs a local run; download the report to open it", err=True)
    elif not webbrowser.open(Path(url).as_uri()):
        click.echo("raywalk: no web browser found to open the report", err=True)


if __name__ == "__main__":
    main()
