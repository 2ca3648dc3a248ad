"""The driver: split a walk into chunks and keep Ray renderer actors busy until it is done.

The driver holds no model and no image, and never imports TensorFlow; its
memory is the list of chunks still to do. Storage is the source of truth: what
is missing is read from the run's index, so a killed driver loses nothing and
`resume` finishes only what is missing.

Failures are never silent. Each chunk call is tracked by its ObjectRef (Ray's
"limit pending tasks" pattern rather than ActorPool, which loses the input of a
call whose actor died); a chunk whose actor or node died is queued again, and a
chunk that fails `max_attempts` times is recorded as failed while the rest of
the run goes on.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import platform
import time
from typing import Any, Iterable

import ray
from ray.exceptions import ActorDiedError, RayActorError, RayError, RayTaskError

from raywalk import __version__
from raywalk.errors import RunError, RunLocationError
from raywalk.manifest import Manifest, new_manifest
from raywalk.progress import Progress
from raywalk.spec import Job, job_from_dict
from raywalk.store import RunStore, frame_ranges

HEARTBEAT_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """How many renderer actors, and what each reserves (None: from the job)."""

    count: int | None = None
    gpus: float | None = None
    cpus: float | None = None


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


def resume_command(uri: str) -> str:
    """The command that finishes the run at `uri`."""
    return f"raywalk resume {uri}"


def render(
    job: Job,
    uri: str,
    *,
    address: str | None = None,
    workers: WorkerSpec = WorkerSpec(),
    force: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
) -> Outcome:
    """Render every frame of `job` that `uri` lacks, then assemble the job's outputs."""
    store = RunStore(uri)
    manifest = store.read_manifest()
    fresh = manifest is None or manifest.fingerprint != job.fingerprint()
    if manifest is not None and fresh and not force:
        raise RunLocationError(
            f"{uri} holds a run of another job ({manifest.job.name!r}, fingerprint "
            f"{manifest.fingerprint[:12]}); use a new output or --force to render over it"
        )
    store.acquire_lock({"host": platform.node(), "pid": os.getpid(), "job": job.name})
    try:
        missing = list(range(job.num_frames)) if fresh else store.missing_frames(job.num_frames, verify=verify)
        progress = progress or Progress(job.num_frames, job.num_frames - len(missing))
        failed: dict[int, str] = {}
        if missing:
            if fresh:
                store.delete("keyframes.npy")
            failed = _render_missing(job, store, missing, address, workers, progress, None if fresh else manifest)
            missing = store.missing_frames(job.num_frames)
        outputs: list[str] = []
        if missing:
            progress.event("incomplete", missing=len(missing), frames=frame_ranges(missing),
                           resume=resume_command(uri))
        elif job.outputs.files and (progress.rendered or not all(map(store.exists, job.output_files().values()))):
            outputs = _get(store, _assemble_task().remote(uri, job.to_dict())) if ray.is_initialized() \
                else assemble_outputs(uri, job.to_dict())
            progress.event("assembled", outputs=outputs)
    finally:
        store.release_lock()
    progress.close()
    return Outcome(uri, job.num_frames, missing, failed, progress.rendered, outputs)


def _get(store: RunStore, refs: Any) -> Any:
    """`ray.get` that keeps the run's lock alive while it waits (model loads, node start-up, assembly)."""
    pending = list(refs) if isinstance(refs, list) else [refs]
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=HEARTBEAT_SECONDS)
        store.heartbeat()
    return ray.get(refs)


def resume(uri: str, **options: Any) -> Outcome:
    """Finish the run at `uri` with the job stored in its manifest."""
    return render(RunStore(uri, create=False).read_job(), uri, **options)


def assemble_outputs(uri: str, job_data: dict[str, Any], partial: bool = False) -> list[str]:
    """Build the job's outputs from the run at `uri`; a Ray task, since assembly decodes
    images, which the driver never holds."""
    from raywalk.assemble import assemble_job

    job = job_from_dict(job_data, source=f"{uri}/manifest.json")
    return assemble_job(RunStore(uri, create=False), job, partial=partial)


def _assemble_task():
    return ray.remote(assemble_outputs).options(num_cpus=1, max_retries=0)


def _render_missing(job: Job, store: RunStore, missing: list[int], address: str | None,
                    spec: WorkerSpec, progress: Progress, previous: Manifest | None) -> dict[int, str]:
    connect(address)
    _check_renderer(job)
    pool = _WorkerPool(job, store.uri, spec)
    try:
        info, first, starting = pool.start(store)
        if store.read_keyframes() is None:
            _get(store, pool.actors[first].encode_keyframes.remote())
        store.write_manifest(run_manifest(job, info, previous))
        progress.begin(job=job.name, frames=job.num_frames, missing=len(missing), workers=len(pool.actors),
                       first_worker_host=info["host"], first_worker_gpus=info["gpus"],
                       random_weights=info["random_weights"], output=store.url())
        if info["random_weights"]:
            progress.event("warning", message="RANDOM WEIGHTS: these frames are noise from an untrained model")
        return _Dispatcher(job, store, pool, progress, {first}, starting).run(_chunks_of(job, missing))
    finally:
        pool.stop()


_started_here = False  # whether this process started its own local Ray (rather than joining a cluster)


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address` ('auto', 'ray://...') or in RAY_ADDRESS, or start a local one."""
    global _started_here
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _started_here = address is None and not os.environ.get("RAY_ADDRESS")
    ray.init(address=address, logging_level="warning", log_to_driver=True)


def _check_renderer(job: Job) -> None:
    """Renderer path, options and prompts, checked in a Ray task: the renderer's module may
    import TensorFlow, which the driver never does. Fails in seconds, before any model loads."""
    from raywalk.renderer import check_renderer

    try:
        ray.get(ray.remote(check_renderer).options(num_cpus=0).remote(job.model, list(job.prompts)))
    except RayTaskError as exc:
        raise RunError(f"{job.source}: {_cause(exc)}") from None


def _chunks_of(job: Job, frames: Iterable[int]) -> list[tuple[int, list[int]]]:
    by_chunk: dict[int, list[int]] = collections.defaultdict(list)
    for frame in frames:
        by_chunk[frame // job.chunking.chunk_size].append(frame)
    return sorted(by_chunk.items())


def run_manifest(job: Job, worker_info: dict[str, Any], previous: Manifest | None = None) -> Manifest:
    """The run's manifest: the job, its run id (kept from `previous`), and what rendered it (a worker's
    `describe`)."""
    base = previous if previous is not None else new_manifest(job)
    return base.replace(raywalk=__version__, random_weights=worker_info["random_weights"],
                        renderer=worker_info["renderer"], versions=worker_info["versions"])


def worker_resources(job: Job, spec: WorkerSpec) -> tuple[int, float, float]:
    """(actors, GPUs each, CPUs each): the spec's values, else the job's.

    By default one actor per GPU of the cluster. A Ray that raywalk started on a
    machine without GPUs gets a single CPU worker; a joined cluster without GPUs
    (an autoscaler that has not added GPU nodes yet) keeps the GPU request, so the
    waiting workers make the autoscaler add nodes, and needs an explicit count.
    """
    gpus = job.workers.gpus if spec.gpus is None else spec.gpus
    cpus = job.workers.cpus if spec.cpus is None else spec.cpus
    count = job.workers.count if spec.count is None else spec.count
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if gpus > 0 and cluster_gpus == 0:
        if _started_here:
            gpus = 0.0
        elif count == 0:
            raise RunError("the cluster has no GPUs yet: give --workers N so that the autoscaler adds GPU nodes "
                           "for them, or --gpus-per-worker 0 for CPU workers")
    if count == 0:
        count = max(1, int(cluster_gpus // gpus)) if gpus > 0 else 1
    return count, gpus, cpus


class _WorkerPool:
    """Renderer actors with explicit resources; each restarts on another node if its own dies."""

    def __init__(self, job: Job, uri: str, spec: WorkerSpec):
        from raywalk.worker import RenderWorker

        count, gpus, cpus = worker_resources(job, spec)
        actor = ray.remote(RenderWorker).options(
            num_gpus=gpus, num_cpus=cpus, max_restarts=-1, max_task_retries=0, max_concurrency=1
        )
        self.actors = [actor.remote(job.to_dict(), uri) for _ in range(count)]

    def start(self, store: RunStore) -> tuple[dict[str, Any], int, dict[ray.ObjectRef, int]]:
        """Wait for the first renderer to be built (the others join as they come up, e.g. on
        nodes the autoscaler is still adding): its `describe`, its index, and the others' pending
        readiness checks. A renderer that cannot be built stops the run here, in one line."""
        probes = {a.describe.remote(): i for i, a in enumerate(self.actors)}
        ready: list[ray.ObjectRef] = []
        while not ready:
            ready, _ = ray.wait(list(probes), num_returns=1, timeout=HEARTBEAT_SECONDS)
            store.heartbeat()
        first = probes.pop(ready[0])
        try:
            return ray.get(ready[0]), first, probes
        except RayActorError as exc:
            raise RunError(f"a renderer could not be built: {_cause(exc)}") from None

    def stop(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)


class _Dispatcher:
    """The ray.wait loop: bounded chunks in flight per actor, re-queue on failure."""

    def __init__(self, job: Job, store: RunStore, pool: _WorkerPool, progress: Progress,
                 usable: set[int], probes: dict[ray.ObjectRef, int]):
        self.job, self.store, self.pool, self.progress = job, store, pool, progress
        self.in_flight: dict[ray.ObjectRef, tuple[int, list[int], int, int]] = {}
        self.load = [0] * len(pool.actors)
        self.usable = usable  # actors that take chunks
        self.probes = probes  # readiness checks of actors starting or restarting -> actor index
        self.recorded_failures = set(store.read_failures())
        self.finished = 0
        self.preview: ray.ObjectRef | None = None

    def run(self, chunks: list[tuple[int, list[int]]]) -> dict[int, str]:
        queue = collections.deque((chunk, frames, 1) for chunk, frames in chunks)
        failed: dict[int, str] = {}
        beat = time.monotonic()
        while queue or self.in_flight:
            self._submit(queue)
            if not self.in_flight and not self.probes:
                raise RunError("every renderer actor died; nothing can render the remaining chunks")
            waiting = list(self.in_flight) + list(self.probes)
            ready, _ = ray.wait(waiting, num_returns=1, timeout=HEARTBEAT_SECONDS / 2)
            if time.monotonic() - beat > HEARTBEAT_SECONDS:
                self.store.heartbeat()
                beat = time.monotonic()
            for ref in ready:
                if ref in self.probes:
                    self._probed(ref)
                else:
                    self._finished(ref, queue, failed)
        if self.preview is not None:
            self._preview_done()  # before the final assembly, which it must not overwrite
        return failed

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
        try:
            self.progress.event("preview", outputs=ray.get(self.preview))
        except RayError as exc:
            self.progress.event("preview_failed", reason=_cause(exc))
        self.preview = None

    def _submit(self, queue: collections.deque) -> None:
        for i in sorted(self.usable, key=lambda i: self.load[i]):
            while queue and self.load[i] < self.job.chunking.in_flight:
                chunk, frames, attempt = queue.popleft()
                ref = self.pool.actors[i].render_chunk.remote(chunk, frames, attempt)
                self.in_flight[ref] = (chunk, frames, attempt, i)
                self.load[i] += 1

    def _finished(self, ref: ray.ObjectRef, queue: collections.deque, failed: dict[int, str]) -> None:
        chunk, frames, attempt, i = self.in_flight.pop(ref)
        self.load[i] -= 1
        try:
            summary = ray.get(ref)
        except (RayActorError, RayTaskError) as exc:
            reason = _cause(exc)
            if isinstance(exc, RayActorError) and i in self.usable:
                self.usable.discard(i)  # send it nothing until it answers again
                self.probes[self.pool.actors[i].describe.remote()] = i
            if attempt < self.job.chunking.max_attempts:
                queue.append((chunk, frames, attempt + 1))
                self.progress.event("retry", chunk=chunk, attempt=attempt + 1, reason=reason)
            else:
                failed[chunk] = reason
                self.store.write_failure(chunk, {"attempts": attempt, "error": reason, "frames": frame_ranges(frames)})
                self.progress.event("failed", chunk=chunk, attempts=attempt, reason=reason)
            return
        if chunk in self.recorded_failures:
            self.store.clear_failure(chunk)
        self.progress.chunk_done(chunk, summary["frames"], summary["seconds"], summary["worker"])
        self.finished += 1
        self._maybe_preview()

    def _probed(self, ref: ray.ObjectRef) -> None:
        i = self.probes.pop(ref)
        try:
            ray.get(ref)
        except ActorDiedError as exc:
            self.progress.event("worker_lost", worker=i, reason=_cause(exc))
            return
        except RayActorError:
            time.sleep(1.0)  # restarting: ask again shortly
            self.probes[self.pool.actors[i].describe.remote()] = i
            return
        self.usable.add(i)


def _cause(exc: RayError) -> str:
    """The last line of what went wrong (the exception itself), without Ray's traceback."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, RayTaskError):
        cause = cause.cause or cause
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__
