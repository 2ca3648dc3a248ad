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
3. The job's soundtrack is copied into the run (checked against the SHA-256
   the job records), so workers, tasks and `resume` never need its path.
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

import collections
import dataclasses
import hashlib
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import ray
from ray.exceptions import ActorDiedError, RayActorError, RayError, RayTaskError, RuntimeEnvSetupError

from raywalk import __version__
from raywalk.core.commands import resume_command
from raywalk.core.pacing import first_pass_job
from raywalk.core.spec import Job, job_from_dict
from raywalk.core.stack import Stack
from raywalk.core.timing import needs_table
from raywalk.errors import AudioError, Interrupted, RendererError, RunError, RunLocationError, StoreError
from raywalk.exec.cluster import Request, WorkerSpec, connect, describe_cluster, fits, worker_resources
from raywalk.exec.progress import Progress
from raywalk.run.lock import HEARTBEAT_EVERY, RunLock
from raywalk.run.manifest import Manifest, ManifestError, admit_stack, new_manifest
from raywalk.run.store import FRAMES_TABLE, SMOOTHNESS, RunStore, frame_ranges, soundtrack_name

__all__ = ["Outcome", "WorkerSpec", "assemble_outputs", "render", "resume", "resume_command", "run_manifest"]

START_TIMEOUT = 600.0  # seconds a joined cluster may take to offer a node that can host a worker
WATCHDOG = 900.0  # seconds without a finished chunk before a `stalled` event
POLL = 1.0  # seconds between looks at the cluster while waiting
ANNOUNCE_EVERY = 30.0  # seconds between repeated waiting events
# What a worker that reserved no GPU starts with: it must not use a GPU (another worker's), nor probe CUDA and log
# the failure (TensorFlow's `E0000 ... failed call to cuInit` on a machine without a GPU driver) at every start.
# TF_CPP_MIN_LOG_LEVEL 3 keeps only TensorFlow's fatal C++ lines (2 still lets that cuInit error through);
# Python exceptions are unaffected. A variable set in the driver's environment is left as it is (a person who
# wants TensorFlow's lines sets TF_CPP_MIN_LOG_LEVEL=0 there; on a local Ray the workers inherit it).
CPU_WORKER_ENV = {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


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
) -> Outcome:
    """Render every frame of `job` that `uri` lacks, then assemble the job's outputs.

    Workers render only with the run's model stack (`raywalk.core.stack`); with
    `allow_stack_change` they render with their own, which the manifest records.

    Raises:
        BadInputError: (exit 2) the location, the worker request or the renderer cannot be used; nothing
            was written.
        RunBusyError: (exit 3) another live driver holds the run, or took it over during this render.
        AudioError: (exit 2) the soundtrack is not the file the job recorded; nothing was written.
        StackChangeError: (exit 2) a worker's stack is not the run's (or not the other workers'), and
            `allow_stack_change` is not given; no frame was written by it.
        RunError: (exit 1) no worker could start or come back, or the walk table could not be measured; the
            message names the missing frames and the resume command.
        Interrupted: (exit 130, 143) SIGINT or SIGTERM (caught in the main thread only) stopped the render; its
            workers were stopped and its lock released, and the message says how to finish it.
        StoreError: (exit 4) storage kept failing.
    """
    session = _Session(job, address, workers, start_timeout, watchdog, allow_stack_change)
    with _Interrupts() as session.interrupts:
        try:
            return _render(session, job, uri, force, verify, progress, heartbeat_every)
        except Interrupted as exc:  # the workers are stopped and the lock released: what is left to do
            how = _after_interrupt(uri, job)
            if session.progress is not None:
                session.progress.event("interrupted", signal=signal.Signals(exc.signum).name, then=how)
                session.progress.close()
            raise Interrupted(f"{exc}; the workers were stopped and the run released; {how}", exc.signum) from None


def _render(
    session: _Session,
    job: Job,
    uri: str,
    force: bool,
    verify: bool,
    progress: Progress | None,
    heartbeat_every: float,
) -> Outcome:
    """`render`'s work, under its signal handlers."""
    store = _open_location(uri)
    manifest, damaged = _peek(store, job, force, session)
    _check_soundtrack(store, job)
    if manifest is None:  # nothing is written before everything that can be checked is
        session.report_to(progress or Progress(job.num_frames, 0))
        session.preflight()
    store.create()
    lock = RunLock(store, {"job": job.name}, heartbeat_every=heartbeat_every, warn=session.warn)
    with lock.held():
        session.lock = lock
        manifest, damaged = _peek(store, job, force, session)
        if damaged:  # rendering the job again repairs its run: good frames of this job are kept
            manifest = store.adopt(job)
        elif manifest is None:  # the new manifest fences any earlier run off before anything else changes
            manifest = new_manifest(job)
            store.start_fresh(manifest)
        _copy_soundtrack(store, job, manifest.run_id)
        missing: Sequence[int] = store.missing_frames(job.num_frames, manifest.run_id, verify=verify)
        progress = session.progress or session.report_to(
            progress or Progress(job.num_frames, job.num_frames - len(missing))
        )
        failed: dict[int, str] = {}
        if missing:
            session.preflight()
            failed = session.render_missing(store, manifest, missing)
            missing = store.missing_frames(job.num_frames, manifest.run_id)
        outputs: list[str] = []
        if missing:
            progress.event("incomplete", missing=len(missing), frames=frame_ranges(missing), resume=resume_command(uri))
        wanted = bool(job.outputs.files) and not missing
        run_id = manifest.run_id
        assemble = wanted and (
            progress.rendered > 0 or not all(store.output_ok(n, run_id) for n in job.output_files().values())
        )
        # frames.parquet again when its rows may have changed, or index files found damaged can be moved out
        frames_table = not missing and (
            progress.rendered > 0 or bool(store.damaged) or not store.output_ok(FRAMES_TABLE, run_id)
        )
        outputs = session.finish(uri, assemble, frames_table)  # the report too, whatever the run's state
        if outputs:
            progress.event("assembled", outputs=outputs)
    progress.close()
    return Outcome(uri, job.num_frames, list(missing), failed, progress.rendered, outputs)


def _after_interrupt(uri: str, job: Job) -> str:
    """What an interrupted render left, as the end of its message: the missing frames and the resume command,
    or that nothing of the job was written."""
    try:
        store = RunStore(uri, create=False)
        manifest = store.read_manifest() if store.root_exists() else None
    except ManifestError:
        return f"the run's manifest is damaged; render the job into {uri} again to repair and finish it"
    except StoreError as exc:
        return f"the run could not be read ({exc}); finish with: {resume_command(uri)}"
    if manifest is None or manifest.fingerprint != job.fingerprint():
        return "nothing of the job was written"
    return _missing_message(store, job)


class _Interrupts:
    """SIGINT (Ctrl-C) and SIGTERM during a render, caught in the main thread. The first is acted on at the
    render's next wait (within `POLL` seconds while it renders), where no write is half done: `check` raises
    `Interrupted`, and the way out stops the workers and releases the lock. A second one, before that, raises
    at once (a render stuck outside a wait); any more are ignored while the render stops. The handlers before
    the render come back after it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.acted = False  # an Interrupted was raised: the render is stopping
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def install(self) -> None:
        """Catch the signals (again after `ray.init`, which sets a SIGTERM handler that exits at once)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            current = signal.getsignal(sig)
            if current != self._received:
                self.previous[sig] = signal.SIG_DFL if current is None else current
                signal.signal(sig, self._received)

    def _received(self, signum: int, frame: object) -> None:
        if self.acted:
            return
        if self.signum is None:
            self.signum = signum
            return
        self.check()

    def check(self) -> None:
        """Raise `Interrupted` once a signal came (and was not acted on yet)."""
        if self.signum is not None and not self.acted:
            self.acted = True
            raise Interrupted(signal.Signals(self.signum).name, self.signum)


def resume(uri: str, **options: Any) -> Outcome:
    """Finish the run at `uri` with the job stored in its manifest (see `render` for what it raises)."""
    return render(RunStore(uri, create=False).read_job(), uri, **options)


def _check_soundtrack(store: RunStore, job: Job) -> None:
    """Refuse a soundtrack whose bytes are not those the job recorded (timing.sha256), unless the run already
    holds a copy of the recorded one (`resume` never needs the original file). Hashed in blocks.

    Raises:
        AudioError: the file is gone (and the run holds no copy) or its content changed.
    """
    name, path = soundtrack_name(job), job.audio_file()
    if name is None or path is None or job.timing is None or job.timing.sha256 is None:
        return
    if store.root_exists() and store.holds(name, job.timing.sha256):
        return
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read the soundtrack, and the run holds no copy: {exc.strerror}") from None
    if digest.hexdigest() != job.timing.sha256:
        raise AudioError(
            f"{path}: changed since the job was loaded (SHA-256 {digest.hexdigest()[:12]}..., the job recorded "
            f"{job.timing.sha256[:12]}...); load the job again"
        )


def _copy_soundtrack(store: RunStore, job: Job, run_id: str) -> None:
    """Copy the job's soundtrack into the run (soundtrack/NAME), streamed and checked, unless it is there.

    Raises:
        BadInputError: the file is gone or changed (its copy is not published).
        StoreError: storage kept failing.
    """
    name, path = soundtrack_name(job), job.audio_file()
    if name is None or path is None or job.timing is None or job.timing.sha256 is None:
        return
    if not store.holds(name, job.timing.sha256):
        store.copy_in(name, path, job.timing.sha256, run_id)


def _open_location(uri: str) -> RunStore:
    """The run location at `uri`, checked (reachable, not a file, creatable); nothing is created.

    Raises:
        RunLocationError: an empty URI, a file, or a location that cannot be reached or created.
    """
    try:
        store = RunStore(uri, create=False)
    except StoreError as exc:
        raise RunLocationError(str(exc)) from None
    if store.local and not store.root_exists():
        _check_creatable(store.root)
    return store


def _check_creatable(path: str) -> None:
    """Whether a local run directory could be created at `path` (which does not exist yet), without creating it.

    Raises:
        RunLocationError: it could not.
    """
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    try:  # access() says yes to root even on read-only mounts and /proc: try it, leaving nothing behind
        os.rmdir(tempfile.mkdtemp(prefix=".raywalk-probe-", dir=parent))
    except OSError as exc:
        raise RunLocationError(f"{path}: cannot be created in {parent}: {exc.strerror or exc}") from None


def _peek(store: RunStore, job: Job, force: bool, session: _Session) -> tuple[Manifest | None, bool]:
    """(the run's manifest if it is a run of `job`, else None; whether the manifest is damaged).

    A damaged manifest is repaired by rendering the job again, as its message
    advises (`RunStore.adopt` keeps this job's good frames).

    Raises:
        RunLocationError: the location holds a run of another job and `force` is not given.
    """
    if not store.root_exists():
        return None, False
    try:
        manifest = store.read_manifest()
    except ManifestError as exc:
        if session.lock is not None:  # said once, when it is acted on
            session.warn(f"{exc}; repairing it with this job")
        return None, True
    if manifest is None or manifest.fingerprint == job.fingerprint():
        return manifest, False
    if not force:
        raise RunLocationError(
            f"{store.uri} holds a run of another job ({manifest.job.name!r}, fingerprint "
            f"{manifest.fingerprint[:12]}); use a new output or --force to render over it"
        )
    return None, False


def assemble_outputs(
    uri: str,
    job_data: dict[str, Any],
    partial: bool = False,
    assemble: bool = True,
    frames_table: bool = False,
    releasing: str | None = None,
) -> list[str]:
    """Build the job's outputs (previews with `partial`; none without `assemble`) from the run at `uri`, then
    its report (which leaves out the lock of token `releasing`: the driver's own, released right after); a Ray
    task, since assembly decodes images, which the driver never holds. Assembling a complete run publishes
    frames.parquet (and moves damaged index files out of index/); `frames_table` does it without outputs.
    Returns where the outputs are (the report and frames.parquet not included)."""
    from raywalk.outputs.assemble import assemble_job, publish_frames_table, write_smoothness
    from raywalk.report.page import write_report

    job = job_from_dict(job_data, source=f"{uri}/manifest.json")
    store = RunStore(uri, create=False)
    assembled = assemble and bool(job.outputs.files)
    outputs = assemble_job(store, job, partial=partial) if assembled else []
    run_id = store.require_manifest().run_id
    if frames_table and not partial and not assembled:
        publish_frames_table(store, job.num_frames, run_id)
    if not partial and job.walk.kind != "grid" and not store.output_ok(SMOOTHNESS, run_id):
        if not store.missing_frames(job.num_frames, run_id):
            write_smoothness(store, job.num_frames, run_id)
    write_report(store, releasing)
    return outputs


def _assemble_task():
    """`assemble_outputs` as a Ray task that reserves no CPU: previews are built while the render workers run,
    and workers may hold every CPU of the cluster (a reserved CPU would wait for them for ever). Assembly
    streams one frame at a time, so its load is light; it stays off the driver, which never holds an image."""
    return ray.remote(assemble_outputs).options(num_cpus=0, num_gpus=0, max_retries=0)


def _measure_task(uri: str, job_data: dict[str, Any]) -> str:
    """The walk table measured and stored (`raywalk.exec.measure.measure_table`); returns its SHA-256."""
    from raywalk.exec.measure import measure_table

    return measure_table(RunStore(uri, create=False), job_from_dict(job_data, source=f"{uri}/manifest.json"))


def _check_task(model: Any, prompts: list[str]) -> str | None:
    """The renderer check on a worker's resources (the strict check refuses what it cannot verify); returns
    the Keras backend the renderer's workers must start with, as this worker's installation decides."""
    from raywalk.renderers.contract import check_renderer, keras_backend

    check_renderer(model, prompts, strict=True)
    return keras_backend(model)


def _chunks(job: Job, frames: Iterable[int]) -> Iterator[tuple[int, range | list[int]]]:
    """(chunk, its frames) in order, from sorted frames; a whole chunk is a range, so a fresh run of any
    length costs the driver no memory per frame."""
    size = job.chunking.chunk_size
    current, picked = -1, list[int]()
    for frame in frames:
        if frame // size != current:
            if picked:
                yield current, _compact(job, current, picked)
            current, picked = frame // size, []
        picked.append(frame)
    if picked:
        yield current, _compact(job, current, picked)


def _compact(job: Job, chunk: int, frames: list[int]) -> range | list[int]:
    whole = job.chunk_frames(chunk)
    return whole if len(frames) == len(whole) else frames


def run_manifest(manifest: Manifest, worker_info: dict[str, Any]) -> Manifest:
    """The run's manifest with what rendered it (a worker's `describe`)."""
    return manifest.replace(
        raywalk=__version__,
        random_weights=worker_info["random_weights"],
        renderer=worker_info["renderer"],
        versions=worker_info["versions"],
    )


class _Session:
    """One render's Ray side: its request, the lock it beats on every wait, its progress."""

    def __init__(
        self,
        job: Job,
        address: str | None,
        spec: WorkerSpec,
        start_timeout: float,
        watchdog: float,
        allow_stack_change: bool = False,
    ):
        self.job, self.address, self.spec = job, address, spec
        self.allow_stack_change = allow_stack_change
        self.manifest: Manifest | None = None  # the run's, once the first worker's stack is admitted
        self.start_timeout, self.watchdog = start_timeout, watchdog
        self.request: Request | None = None
        self.backend: str | None = None  # the Keras backend the renderer's workers start with
        self.lock: RunLock | None = None
        self.interrupts = _Interrupts()  # the render's own, set by `render`
        self.watch: _Restarts | None = None
        self.progress: Progress | None = None
        self._early: list[tuple[str, dict[str, Any]]] = []  # events before there is a progress to report them

    def report_to(self, progress: Progress) -> Progress:
        """Report events to `progress` from now on, starting with those that came before it; returns it."""
        self.progress = progress
        for kind, fields in self._early:
            progress.event(kind, **fields)
        self._early.clear()
        return progress

    def event(self, kind: str, **fields: Any) -> None:
        if self.progress is None:
            self._early.append((kind, fields))
        else:
            self.progress.event(kind, **fields)

    def warn(self, message: str) -> None:
        self.event("warning", message=message)

    def beat(self) -> None:
        if self.lock is not None:
            self.lock.beat()

    def preflight(self) -> None:
        """Join or start Ray, size the workers and check the renderer on a worker's resources (once).

        Raises:
            BadInputError: the request or the renderer cannot be used.
            RunError: no node could host a worker within the start timeout.
        """
        if self.request is not None:
            return
        connect(self.address, self.job.model.renderer)
        self.interrupts.install()  # ray.init set its own SIGTERM handler
        request = worker_resources(self.job, self.spec)
        # A worker's resources, to check the renderer where workers run: it runs before the pool starts (and
        # ends before it), so it never waits for the workers' resources.
        env = _worker_env(request)
        check = ray.remote(_check_task).options(
            num_gpus=request.gpus,
            num_cpus=request.cpus,
            max_retries=0,
            runtime_env={"env_vars": env} if env else None,
        )
        ref = check.remote(self.job.model, list(self.job.prompts))
        self.wait([ref], request)
        try:
            self.backend = ray.get(ref)
        except RayTaskError as exc:
            raise RendererError(f"{self.job.source}: {_cause(exc)}") from None
        except RuntimeEnvSetupError as exc:
            raise RunError(f"the workers could not set up the renderer's environment: {_cause(exc)}") from None
        self.request = request

    def wait(
        self, refs: list[ray.ObjectRef], starting: Request | None = None, tick: Callable[[], None] | None = None
    ) -> list[ray.ObjectRef]:
        """Wait for one of `refs`, beating the lock, announcing restarts and calling `tick` every `POLL`
        seconds. While workers are `starting`, a wait that no node can end is announced
        (`waiting_for_resources`) and bounded by the start timeout; a long one is announced.

        Raises:
            RunError: no node could host a worker within the start timeout.
        """
        began = time.monotonic()
        announced = began - ANNOUNCE_EVERY
        while True:
            self.interrupts.check()
            ready, _ = ray.wait(refs, num_returns=1, timeout=POLL)
            self.interrupts.check()
            self.beat()
            if self.watch is not None:
                self.watch.poll()
            if tick is not None:
                tick()
            if ready:
                return ready
            if starting is None:
                continue
            now = time.monotonic()
            if not fits(starting.gpus, starting.cpus):
                if now - began > self.start_timeout:
                    for ref in refs:  # a task no node can run would wait in the cluster forever
                        ray.cancel(ref)
                    raise RunError(
                        f"no node could host a worker for {now - began:.0f} s: {starting} asked for, "
                        f"the cluster has {describe_cluster()} (see --start-timeout)"
                    )
                if now - announced >= ANNOUNCE_EVERY:
                    self.event(
                        "waiting_for_resources",
                        request=str(starting),
                        cluster=describe_cluster(),
                        waited=round(now - began),
                        timeout=self.start_timeout,
                    )
                    announced = now
            elif now - began >= 2 * ANNOUNCE_EVERY and now - announced >= 2 * ANNOUNCE_EVERY:
                self.event("waiting_for_workers", waited=round(now - began))  # e.g. a model still loading
                announced = now

    def get(self, ref: ray.ObjectRef) -> Any:
        """`ray.get` of one call, beating the lock while it runs."""
        self.wait([ref])
        return ray.get(ref)

    def call(self, pool: _WorkerPool, i: int, method: str, *args: Any) -> Any:
        """`actors[i].method(*args)`, asked again each time the actor's process dies under it and restarts
        (each restart announced), as chunks are; calls outside the dispatch loop (encoding the prompts, the
        first pass) must survive a lost worker too.

        Raises:
            RunError: the actor is gone for good (its restarts used up).
        """
        while True:
            sent = time.monotonic()
            try:
                return self.get(getattr(pool.actors[i], method).remote(*args))
            except ActorDiedError as exc:
                raise RunError(f"the renderer died for good during {method} ({_cause(exc)})") from None
            except RayActorError as exc:  # its process died: it is restarting, ask it again when it is back
                if self.watch is not None:
                    self.watch.died(i, _cause(exc), sent)
                time.sleep(POLL)

    def render_missing(self, store: RunStore, manifest: Manifest, missing: Sequence[int]) -> dict[int, str]:
        """Start the workers and render `missing`; returns the chunks that failed for good.

        Raises:
            RunError: no worker could be built, or every worker died for good (with the resume command).
        """
        assert self.request is not None and self.progress is not None
        pool = _WorkerPool(self.job, store.uri, self.request, self.backend)
        try:
            self.watch = watch = _Restarts(self, pool)
            first, info, probes = self.start(pool)
            # before anything is written: a worker of another stack renders nothing (nor encodes the prompts)
            admitted = admit_stack(manifest, Stack.from_json(info["stack"]), allow=self.allow_stack_change)
            self._stack_event(manifest, admitted, first)
            sha = manifest.keyframes_sha256
            if store.read_keyframes(sha) is None:  # none yet, or damaged: encoded again before any frame
                sha = self.call(pool, first, "encode_keyframes")
            manifest = run_manifest(admitted, info).replace(keyframes_sha256=sha)
            store.write_manifest(manifest)
            self.manifest = manifest
            if needs_table(self.job) and store.read_timing(manifest.timing_sha256) is None:
                store.write_manifest(manifest.replace(timing_sha256=self.measure(store, pool, first)))
            self.progress.begin(
                job=self.job.name,
                frames=self.job.num_frames,
                missing=len(missing),
                workers=len(pool.actors),
                first_worker_host=info["host"],
                first_worker_gpus=info["gpus"],
                random_weights=info["random_weights"],
                output=store.url(),
            )
            if info["random_weights"]:
                self.progress.event("warning", message="RANDOM WEIGHTS: these frames are noise from an untrained model")
            dispatcher = _Dispatcher(self, store, pool, watch, {first}, probes)
            return dispatcher.run(_chunks(self.job, missing))
        except RunError as exc:  # no worker came, or none came back: what the run lacks, and the way on
            raise RunError(f"{exc}; {_missing_message(store, self.job)}") from None
        finally:
            self.watch = None
            self.manifest = None
            pool.stop()

    def admit(self, store: RunStore, i: int, info: dict[str, Any]) -> None:
        """Let worker `i`, which joined after the first (or came back from a restart), render: its stack must
        be the run's, or the change allowed (then recorded in the manifest before it gets a chunk).

        Raises:
            StackChangeError: its stack is another, and the change is not allowed.
        """
        if self.manifest is None:
            return
        admitted = admit_stack(
            self.manifest, Stack.from_json(info["stack"]), allow=self.allow_stack_change, who=f"worker {i}"
        )
        if admitted is not self.manifest:
            self._stack_event(self.manifest, admitted, i)
            store.write_manifest(admitted)
            self.manifest = admitted

    def _stack_event(self, before: Manifest, after: Manifest, worker: int) -> None:
        """Announce a stack the run did not record before (`stack_changed` for an allowed change)."""
        new = [r for r in after.stacks if r not in before.stacks]
        for record in new:
            fields = {"worker": worker, "stack": record.stack.id, "versions": record.stack.summary()}
            if record.allowed:
                self.event("stack_changed", previous=before.stack.id if before.stack else None, **fields)
            else:
                self.event("stack", **fields)

    def measure(self, store: RunStore, pool: _WorkerPool, i: int) -> str:
        """Render what the run lacks of the first pass (perceptual pacing) on actor `i`, one call per first-pass
        chunk, then measure the walk table in a CPU task; returns the stored table's SHA-256.

        Raises:
            RunError: a first-pass call or the measurement failed (resume renders only what is missing).
        """
        try:
            if self.job.pacing is not None:
                small = first_pass_job(self.job)
                have = store.pacing_frames()
                calls = [[j for j in small.chunk_frames(c) if j not in have] for c in range(small.num_chunks)]
                self.event("first_pass", samples=small.num_frames, missing=small.num_frames - len(have))
                for frames in calls:
                    if frames:
                        self.call(pool, i, "render_first_pass", frames)
            # No CPU reserved: the workers, alive while it runs (they render the first pass), may hold every CPU.
            # Measuring decodes the soundtrack or the first-pass images, so it stays off the driver.
            task = ray.remote(_measure_task).options(num_cpus=0, num_gpus=0, max_retries=0)
            sha = self.get(task.remote(store.uri, self.job.to_dict()))
        except RayError as exc:
            raise RunError(f"the walk table could not be measured: {_cause(exc)}") from None
        self.event("timing_measured", sha256=sha[:12])
        return str(sha)

    def start(self, pool: _WorkerPool) -> tuple[int, dict[str, Any], dict[ray.ObjectRef, int]]:
        """Wait for the first renderer to be built (the others join as they come up, e.g. on nodes the
        autoscaler is still adding): its index, its `describe`, and the others' pending readiness checks.

        Raises:
            RunError: no renderer could be built (each died, after its restarts), or none found a node.
        """
        probes = {a.describe.remote(): i for i, a in enumerate(pool.actors)}
        reasons: list[str] = []
        while probes:
            ready = self.wait(list(probes), starting=self.request)
            for ref in ready:
                i = probes.pop(ref)
                try:
                    return i, ray.get(ref), probes
                except RayActorError as exc:
                    reasons.append(_cause(exc))
                    if self.watch is not None:
                        self.watch.poll(now=True)  # the restarts it went through, before its loss
                    self.event("worker_lost", worker=i, reason=reasons[-1])
        raise RunError(f"no renderer could be built ({reasons[-1]})")

    def finish(self, uri: str, assemble: bool, frames_table: bool) -> list[str]:
        """The job's outputs (with `assemble`), frames.parquet (with either) and the run report, built in a Ray
        task (in-process when Ray was never needed); returns where the outputs are. The report is the last
        thing written under this driver's lock, which it releases next: the report does not mention it."""
        releasing = None if self.lock is None else self.lock.token
        args = (uri, self.job.to_dict(), False, assemble, frames_table, releasing)
        if not ray.is_initialized():
            return assemble_outputs(*args)
        return self.get(_assemble_task().remote(*args))


def _missing_message(store: RunStore, job: Job) -> str:
    """What a run that stops early lacks, and the command that finishes it."""
    missing = store.missing_frames(job.num_frames)
    return (
        f"{len(missing)} frames missing ({frame_ranges(missing)}); finish with: {resume_command(store.uri)}"
        if missing
        else f"finish with: {resume_command(store.uri)}"
    )


def _worker_env(request: Request) -> dict[str, str]:
    """The environment variables a worker process (an actor, or the renderer check) of `request` starts with:
    `CPU_WORKER_ENV` for a worker without a GPU, less what the driver's own environment sets."""
    env = CPU_WORKER_ENV if request.gpus == 0 else {}
    return {name: value for name, value in env.items() if name not in os.environ}


class _WorkerPool:
    """Renderer actors with explicit resources; each restarts (on another node if its own died) at most
    `workers.max_restarts` times."""

    def __init__(self, job: Job, uri: str, request: Request, backend: str | None = None):
        from raywalk.exec.worker import RenderWorker

        env = _worker_env(request)
        if backend:
            env["KERAS_BACKEND"] = backend
        actor = ray.remote(RenderWorker).options(
            num_gpus=request.gpus,
            num_cpus=request.cpus,
            max_restarts=job.workers.max_restarts,
            max_task_retries=0,
            max_concurrency=1,
            # set before anything in the actor's process imports Keras (the job's own env_vars merge in)
            runtime_env={"env_vars": env} if env else None,
        )
        self.max_restarts = job.workers.max_restarts
        self.actors: list[Any] = [actor.remote(job.to_dict(), uri) for _ in range(request.count)]  # handles

    def stop(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)


class _Restarts:
    """Announces each actor restart once (`worker_restarting`), whether a chunk call saw the death or
    Ray's state API did (a renderer dying in its constructor fails no call until its restarts run out)."""

    def __init__(self, session: _Session, pool: _WorkerPool):
        self.session, self.pool = session, pool
        self.announced = [0] * len(pool.actors)
        self.announced_at = [-math.inf] * len(pool.actors)  # monotonic time of each actor's latest announcement
        self.ids = {a._actor_id.hex(): i for i, a in enumerate(pool.actors)}
        self.checked = 0.0

    def died(self, i: int, reason: str, since: float) -> None:
        """Actor `i`'s process died under a call sent at `since` (`reason`): it restarts if it has restarts
        left. A restart announced after the call was sent (by Ray's state API, asked first, or for another
        call that the same death failed) is this one: each death is announced once."""
        self.poll(now=True)
        if self.announced_at[i] < since and self.announced[i] < self.pool.max_restarts:
            self.announce(i, self.announced[i] + 1, reason)

    def announce(self, i: int, restart: int, reason: str) -> None:
        self.announced[i] = restart
        self.announced_at[i] = time.monotonic()
        self.session.event(
            "worker_restarting", worker=i, restart=restart, max_restarts=self.pool.max_restarts, reason=reason
        )

    def poll(self, now: bool = False) -> None:
        """Announce restarts that Ray's state API reports (every few seconds, or `now`; needs the dashboard)."""
        if not now and time.monotonic() - self.checked < 2 * POLL:
            return
        self.checked = time.monotonic()
        try:
            from ray.util.state import list_actors

            context = ray.get_runtime_context()  # the address: without it, Ray guesses among local clusters
            actors = list_actors(
                address=context.gcs_address,
                filters=[("job_id", "=", context.get_job_id())],
                raise_on_missing_output=False,
                limit=len(self.ids) + 1000,
                timeout=2,
                detail=True,
            )
        except Exception:
            return
        for actor in actors:
            i = self.ids.get(actor.actor_id)
            if i is None:
                continue
            for restart in range(self.announced[i] + 1, (actor.num_restarts or 0) + 1):
                self.announce(i, restart, f"its process died ({str(actor.state).lower()})")


class _Dispatcher:
    """The ray.wait loop: bounded chunks in flight per actor, re-queue on failure, a watchdog."""

    def __init__(
        self,
        session: _Session,
        store: RunStore,
        pool: _WorkerPool,
        watch: _Restarts,
        usable: set[int],
        probes: dict[ray.ObjectRef, int],
    ):
        self.session, self.job, self.store, self.pool, self.watch = session, session.job, store, pool, watch
        assert session.progress is not None, "a session reports to its progress before it dispatches"
        self.progress: Progress = session.progress
        self.in_flight: dict[ray.ObjectRef, tuple[int, range | list[int], int, int, float]] = {}  # ..., sent at
        self.load = [0] * len(pool.actors)
        self.usable = usable  # actors that take chunks
        self.probes = probes  # readiness checks of actors starting or restarting -> actor index
        self.lost: set[int] = set()
        self.recorded_failures = set(store.read_failures())
        self.finished = 0
        self.preview: ray.ObjectRef | None = None
        self.retries: collections.deque = collections.deque()  # chunks to try again, before new ones
        self.chunks: Iterator[tuple[int, range | list[int]]] = iter(())
        self.exhausted = False  # every chunk has been handed out once
        self.last_chunk = time.monotonic()

    def run(self, chunks: Iterator[tuple[int, range | list[int]]]) -> dict[int, str]:
        """Render `chunks`; returns the chunks that failed `max_attempts` times, with why.

        Raises:
            RunError: every actor died for good, or the cluster has no node left for the restarting ones.
            StackChangeError: a worker's stack is not the run's, and the change is not allowed.
        """
        self.chunks = chunks
        failed: dict[int, str] = {}
        if self.probes:  # workers already up are admitted (or refused) before the first chunk is sent
            for ref in ray.wait(list(self.probes), num_returns=len(self.probes), timeout=0)[0]:
                self._probed(ref)
        while True:
            self._submit()
            if not self.in_flight and self.exhausted and not self.retries:
                break
            if not self.in_flight and not self.probes:
                raise RunError(
                    f"every renderer actor died for good (after up to {self.pool.max_restarts} restarts each)"
                )
            # With every worker restarting, a cluster that has no node for them any more (a lost node the
            # autoscaler does not replace) is waited for like one at start-up: announced, then given up.
            starting = None if self.usable or self.in_flight else self.session.request
            ready = self.session.wait(list(self.in_flight) + list(self.probes), starting=starting, tick=self._watchdog)
            for ref in ready:
                if ref in self.probes:
                    self._probed(ref)
                else:
                    self._finished(ref, failed)
        if self.preview is not None:
            self.session.wait([self.preview])
            self._preview_done()  # before the final assembly, which it must not overwrite
        return failed

    def _next(self) -> tuple[int, range | list[int], int] | None:
        if self.retries:
            return self.retries.popleft()
        if not self.exhausted:
            item = next(self.chunks, None)
            if item is not None:
                return (*item, 1)
            self.exhausted = True
        return None

    def _watchdog(self) -> None:
        quiet = time.monotonic() - self.last_chunk
        if quiet >= self.session.watchdog:
            chunks = sorted(chunk for chunk, *_ in self.in_flight.values())
            self.progress.event(
                "stalled",
                seconds=round(quiet),
                in_flight=chunks,
                workers_ready=len(self.usable),
                workers_starting=len(self.probes),
                workers_lost=len(self.lost),
            )
            self.last_chunk = time.monotonic()  # announce again after another quiet period

    def _maybe_preview(self) -> None:
        """Every `preview_every` chunks, rebuild the outputs from the frames done so far (in a task)."""
        every = self.job.outputs.preview_every
        if not every or not self.job.outputs.files or self.finished % every:
            return
        if self.preview is not None:
            if not ray.wait([self.preview], timeout=0)[0]:
                return  # the previous preview is still being built
            self._preview_done()
        self.preview = _assemble_task().remote(self.store.uri, self.job.to_dict(), True)

    def _preview_done(self) -> None:
        if self.preview is None:
            return
        try:
            self.progress.event("preview", outputs=ray.get(self.preview))
        except RayError as exc:
            self.progress.event("preview_failed", reason=_cause(exc))
        self.preview = None

    def _submit(self) -> None:
        for i in sorted(self.usable, key=lambda i: self.load[i]):
            while self.load[i] < self.job.chunking.in_flight:
                item = self._next()
                if item is None:
                    return
                chunk, frames, attempt = item
                ref = self.pool.actors[i].render_chunk.remote(chunk, frames, attempt)
                self.in_flight[ref] = (chunk, frames, attempt, i, time.monotonic())
                self.load[i] += 1

    def _finished(self, ref: ray.ObjectRef, failed: dict[int, str]) -> None:
        chunk, frames, attempt, i, sent = self.in_flight.pop(ref)
        self.load[i] -= 1
        try:
            summary = ray.get(ref)
        except (RayActorError, RayTaskError) as exc:
            reason = _cause(exc)
            if isinstance(exc, RayActorError) and i in self.usable:
                self.usable.discard(i)  # send it nothing until it answers again
                if isinstance(exc, ActorDiedError):
                    self._lost(i, reason)
                else:
                    self.watch.died(i, reason, sent)
                    self.probes[self.pool.actors[i].describe.remote()] = i
            if attempt < self.job.chunking.max_attempts:
                self.retries.append((chunk, frames, attempt + 1))
                self.progress.event("retry", chunk=chunk, attempt=attempt + 1, reason=reason)
            else:
                failed[chunk] = reason
                self.store.write_failure(chunk, {"attempts": attempt, "error": reason, "frames": frame_ranges(frames)})
                self.progress.event("failed", chunk=chunk, attempts=attempt, reason=reason)
            return
        if chunk in self.recorded_failures:
            self.store.clear_failure(chunk)
        self.last_chunk = time.monotonic()
        self.progress.chunk_done(chunk, summary["frames"], summary["seconds"], summary["worker"])
        self.finished += 1
        self._maybe_preview()

    def _lost(self, i: int, reason: str) -> None:
        if i not in self.lost:
            self.watch.poll(now=True)
            self.lost.add(i)
            self.progress.event("worker_lost", worker=i, reason=reason)

    def _probed(self, ref: ray.ObjectRef) -> None:
        i = self.probes.pop(ref)
        try:
            info = ray.get(ref)
        except ActorDiedError as exc:
            self._lost(i, _cause(exc))
            return
        except RayActorError:
            time.sleep(POLL)  # restarting: ask again shortly
            self.probes[self.pool.actors[i].describe.remote()] = i
            return
        self.session.admit(self.store, i, info)
        self.usable.add(i)


def _cause(exc: RayError) -> str:
    """What went wrong in one line, without Ray's traceback: the exception's last line (a constructor's own
    error included), or for an actor whose process died the sentence that says why."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, RayTaskError):
        cause = cause.cause or cause
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    if isinstance(cause, RayActorError) and "error raised in its creation task" not in str(cause):
        why = [line for line in lines if line.startswith("The actor")]
        if why:
            return why[-1].split(". ")[0].rstrip(".")
    return lines[-1] if lines else type(cause).__name__
