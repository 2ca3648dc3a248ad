"""The driver: split a walk into chunks and keep Ray renderer actors busy until it is done.

The driver holds no model and no image, and never imports TensorFlow; its
memory does not grow with the frame count (chunks are ranges, made as they are
dispatched). Storage is the source of truth: what is missing is read from the
run's index, so a killed driver loses nothing and `resume` finishes only what
is missing.

A render goes in this order, so that a run directory never lies:

1. Bad input is refused before anything is written: the --out location, the
   worker request against the cluster, and the renderer (path, options, prompts,
   weights) checked in a Ray task with a worker's resources.
2. The run's lock is taken, then the manifest is read (never the other way
   round) and, for a fresh run, written at once: a driver killed while models
   load leaves a run that `resume` finishes.
3. The files the job names (its soundtrack, its pictures) are copied into the
   run, hashed while they stream and kept only with the SHA-256 the job
   recorded when it was loaded, so workers, tasks and `resume` never need their
   paths. Each is read once per render (none, where the run holds its copy); a
   render that made the location and finds one changed removes what it made.
4. Workers start; the manifest records what the first one runs. A job that
   `raywalk.core.timing.needs_table` gets its walk table before any frame is
   dispatched: the first pass (perceptual pacing) on the workers, then the
   table measured in a CPU task and stored with the run (`timing.npy`).

Failures are never silent, and no wait is unbounded or unannounced. Each chunk
call is tracked by its ObjectRef (Ray's "limit pending tasks" pattern rather
than ActorPool, which loses the input of a call whose actor died); a chunk
whose actor or node died is queued again, and a chunk that fails
`max_attempts` times is recorded as failed while the rest of the run goes on.
Actors restart a bounded number of times (`workers.max_restarts`), each restart
announced; when no worker can come back the run ends with the missing frames
and the resume command. Every wait beats the lock, whose fencing token stops a
displaced driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from typing import Any

from raywalk.core.commands import resume_command
from raywalk.core.job import Job
from raywalk.errors import BadInputError, Interrupted, StoreError
from raywalk.exec.cluster import WorkerSpec
from raywalk.exec.interrupts import Interrupts
from raywalk.exec.location import check_inputs, copy_inputs, open_location, peek
from raywalk.exec.phases import RenderRun, finish, missing_message
from raywalk.exec.progress import Progress
from raywalk.exec.session import START_TIMEOUT, WATCHDOG, Session
from raywalk.run.lock import HEARTBEAT_EVERY, RunLock
from raywalk.run.manifest import ManifestError, new_manifest
from raywalk.run.state import RunState
from raywalk.run.store import FRAMES_TABLE, RunStore, frame_ranges

__all__ = ["Outcome", "WorkerSpec", "render", "resume"]


@dataclasses.dataclass
class Outcome:
    """What a render left in storage."""

    uri: str
    num_frames: int
    missing: list[int]
    failed_chunks: dict[int, str]
    rendered: int
    outputs: list[str]

    @property
    def complete(self) -> bool:
        return not self.missing

    def resume_command(self) -> str:
        return resume_command(self.uri)


def render(
    job: Job,
    uri: str,
    *,
    address: str | None = None,
    workers: WorkerSpec = WorkerSpec(),
    force: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
    start_timeout: float = START_TIMEOUT,
    watchdog: float = WATCHDOG,
    heartbeat_every: float = HEARTBEAT_EVERY,
    allow_stack_change: bool = False,
    store: RunStore | None = None,
) -> Outcome:
    """Render every frame of `job` that `uri` lacks, then assemble the job's outputs.

    Workers render only with the run's model stack (`raywalk.core.stack`); with
    `allow_stack_change` they render with their own, which the manifest records. `store`: the run at `uri`,
    already opened (by `resume`), so that one render opens its location once.

    Raises:
        BadInputError: (exit 2) the location, the worker request or the renderer cannot be used; nothing
            was written.
        RunBusyError: (exit 3) another live driver holds the run, or took it over during this render.
        AudioError, PictureError: (exit 2) the soundtrack or a picture is gone (and the run holds no copy) or
            not the file the job recorded; nothing was written where the render made the location.
        StackChangeError: (exit 2) a worker's stack is not the run's (or not the other workers'), and
            `allow_stack_change` is not given; no frame was written by it.
        RunError: (exit 1) no worker could start or come back, or the walk table could not be measured; the
            message names the missing frames and the resume command.
        Interrupted: (exit 130, 143) SIGINT or SIGTERM (caught in the main thread only) stopped the render; its
            workers were stopped and its lock released, and the message says how to finish it.
        StoreError: (exit 4) storage kept failing.
    """
    session = Session(job, address, workers, start_timeout, watchdog)
    with Interrupts() as session.interrupts:
        try:
            return _render(session, store, uri, force, verify, progress, heartbeat_every, allow_stack_change)
        except Interrupted as exc:  # the workers are stopped and the lock released: what is left to do
            how = _after_interrupt(uri, job)
            if session.progress is not None:
                session.progress.event("interrupted", signal=signal.Signals(exc.signum).name, then=how)
                session.progress.close()
            raise Interrupted(f"{exc}; the workers were stopped and the run released; {how}", exc.signum) from None


def resume(uri: str, **options: Any) -> Outcome:
    """Finish the run at `uri` with the job stored in its manifest (see `render` for what it raises)."""
    store = RunStore(uri, create=False)
    return render(store.read_job(), uri, store=store, **options)


def _render(
    session: Session,
    store: RunStore | None,
    uri: str,
    force: bool,
    verify: bool,
    progress: Progress | None,
    heartbeat_every: float,
    allow_stack_change: bool,
) -> Outcome:
    """`render`'s work, under its signal handlers: its phases, from one read of the run (`RunState`)."""
    job = session.job
    fingerprint = job.fingerprint()  # once: the workers get it with the job
    store = open_location(uri) if store is None else store
    manifest, damaged = peek(store, job, fingerprint, force)
    check_inputs(store, job)
    if manifest is None:  # nothing is written before everything that can be checked is
        session.report_to(progress or Progress(job.num_frames, 0))
        session.preflight()
    created = not store.root_exists()
    store.create()
    try:
        return _render_held(
            session, store, uri, fingerprint, created, force, verify, progress, heartbeat_every, allow_stack_change
        )
    except _InputChanged as exc:  # the location was made by this render, and holds nothing else yet
        with contextlib.suppress(OSError):
            store.fs.delete_dir(store.root)
        raise exc.error from None


class _InputChanged(Exception):
    """A file the job names failed its copy into a location this render made: the location is removed."""

    def __init__(self, error: BadInputError) -> None:
        super().__init__(str(error))
        self.error = error


def _render_held(
    session: Session,
    store: RunStore,
    uri: str,
    fingerprint: str,
    created: bool,
    force: bool,
    verify: bool,
    progress: Progress | None,
    heartbeat_every: float,
    allow_stack_change: bool,
) -> Outcome:
    """`_render` once the location exists (`created`: by this render): the phases under the run's lock."""
    job = session.job
    lock = RunLock(store, {"job": job.name}, heartbeat_every=heartbeat_every, warn=session.warn)
    with lock.held():
        session.lock = lock
        manifest, damaged = peek(store, job, fingerprint, force, session.warn)
        if damaged:  # rendering the job again repairs its run: good frames of this job are kept
            state = RunState.read(store, store.adopt(job), verify)
        elif manifest is None:  # the new manifest fences any earlier run off before anything else changes
            manifest = new_manifest(job)
            store.start_fresh(manifest)
            state = RunState.fresh(manifest)  # a new run id: no row of the index is this run's
        else:
            state = RunState.read(store, manifest, verify)
        try:
            copy_inputs(store, job, state.manifest.run_id)
        except BadInputError as exc:
            if created:
                raise _InputChanged(exc) from None
            raise
        progress = session.progress or session.report_to(
            progress or Progress(job.num_frames, job.num_frames - len(state.missing))
        )
        failed: dict[int, str] = {}
        if state.missing:
            session.preflight()
            failed = RenderRun(session, store, state, fingerprint, allow_stack_change).render_missing()
        missing = state.missing
        if missing:
            progress.event("incomplete", missing=len(missing), frames=frame_ranges(missing), resume=resume_command(uri))
        wanted = bool(job.outputs.files) and not missing
        run_id = state.manifest.run_id
        assemble = wanted and (
            progress.rendered > 0 or not all(store.output_ok(n, run_id) for n in job.output_files().values())
        )
        # frames.parquet again when its rows may have changed, or index files found damaged can be moved out
        frames_table = not missing and (
            progress.rendered > 0 or bool(store.damaged) or not store.output_ok(FRAMES_TABLE, run_id)
        )
        outputs = finish(session, store, state, assemble, frames_table)  # the report too, whatever the run's state
        if outputs:
            progress.event("assembled", outputs=outputs)
    progress.close()
    return Outcome(uri, job.num_frames, list(missing), failed, progress.rendered, outputs)


def _after_interrupt(uri: str, job: Job) -> str:
    """What an interrupted render left, as the end of its message: the missing frames and the resume command,
    or that nothing of the job was written. The run is read again: the render stopped mid-way."""
    try:
        store = RunStore(uri, create=False)
        manifest = store.read_manifest() if store.root_exists() else None
    except ManifestError:
        return f"the run's manifest is damaged; render the job into {uri} again to repair and finish it"
    except StoreError as exc:
        return f"the run could not be read ({exc}); finish with: {resume_command(uri)}"
    if manifest is None or manifest.fingerprint != job.fingerprint():
        return "nothing of the job was written"
    return missing_message(store, store.missing_frames(job.num_frames))
