"""The phases of one render once its run is held (`RenderRun`): start the workers and admit their model stack,
encode the prompts, measure the walk table, dispatch the missing frames, then finish (outputs and report).

It works from the run's `RunState`, read once at the start, and refreshes it where the render changed the run:
the manifest it writes, the frames its chunks rendered (no second read of the index).
"""

from __future__ import annotations

from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from raywalk import __version__
from raywalk.core.commands import resume_command
from raywalk.core.pacing import first_pass_job
from raywalk.core.stack import Stack
from raywalk.core.timing import needs_table
from raywalk.errors import RunError, describe
from raywalk.exec.dispatch import Dispatcher, chunks
from raywalk.exec.pool import Restarts, WorkerPool
from raywalk.exec.session import Session
from raywalk.exec.tasks import assemble_outputs, assemble_task, measure_task
from raywalk.run.manifest import Manifest, admit_stack
from raywalk.run.state import RunState
from raywalk.run.store import RunStore, frame_ranges


def run_manifest(manifest: Manifest, worker_info: dict[str, Any]) -> Manifest:
    """The run's manifest with what rendered it (a worker's `describe`)."""
    return manifest.replace(
        raywalk=__version__,
        random_weights=worker_info["random_weights"],
        renderer=worker_info["renderer"],
        versions=worker_info["versions"],
    )


def missing_message(store: RunStore, missing: list[int]) -> str:
    """What a run that stops early lacks (`missing`), and the command that finishes it."""
    return (
        f"{len(missing)} frames missing ({frame_ranges(missing)}); finish with: {resume_command(store.uri)}"
        if missing
        else f"finish with: {resume_command(store.uri)}"
    )


class RenderRun:
    """One render of `job` into the held run `store`, through `session`, from the run's `state`."""

    def __init__(self, session: Session, store: RunStore, state: RunState, fingerprint: str, allow_stack_change: bool):
        self.session, self.job, self.store, self.state = session, session.job, store, state
        self.fingerprint, self.allow_stack_change = fingerprint, allow_stack_change
        self.manifest: Manifest | None = None  # the run's, once the first worker's stack is admitted

    def render_missing(self) -> dict[int, str]:
        """Start the workers and render the state's missing frames; returns the chunks that failed for good.
        The state then holds the frames the chunks rendered as done.

        Raises:
            RunError: no worker could be built, or every worker died for good (with the resume command).
        """
        session, store, state = self.session, self.store, self.state
        assert session.request is not None and session.progress is not None
        pool = WorkerPool(self.job, self.fingerprint, store.uri, session.request, session.backend)
        dispatcher: Dispatcher | None = None
        try:
            session.watch = watch = Restarts(session, pool)
            first, info, probes = self.start(pool)
            # before anything is written: a worker of another stack renders nothing (nor encodes the prompts)
            manifest = state.manifest
            admitted = admit_stack(manifest, Stack.from_json(info["stack"]), allow=self.allow_stack_change)
            self._stack_event(manifest, admitted, first)
            sha = manifest.keyframes_sha256
            if store.read_keyframes(sha) is None:  # none yet, or damaged: encoded again before any frame
                sha = session.call(pool, first, "encode_keyframes")
            manifest = run_manifest(admitted, info).replace(keyframes_sha256=sha)
            self._write(manifest)
            if needs_table(self.job) and store.read_timing(manifest.timing_sha256) is None:
                self._write(manifest.replace(timing_sha256=self.measure(pool, first)))
            session.progress.begin(
                job=self.job.name,
                frames=self.job.num_frames,
                missing=len(state.missing),
                workers=len(pool.actors),
                first_worker_host=info["host"],
                first_worker_gpus=info["gpus"],
                random_weights=info["random_weights"],
                output=store.url(),
            )
            if info["random_weights"]:
                session.progress.event(
                    "warning", message="RANDOM WEIGHTS: these frames are noise from an untrained model"
                )
            dispatcher = Dispatcher(session, store, pool, watch, {first}, probes, self.admit, state.failures)
            failed = dispatcher.run(chunks(self.job, state.missing))
            state.rendered(dispatcher.rendered)
            return failed
        except RunError as exc:  # no worker came, or none came back: what the run lacks, and the way on
            if dispatcher is not None:
                state.rendered(dispatcher.rendered)
            raise RunError(f"{exc}; {missing_message(store, state.missing)}") from None
        finally:
            session.watch = None
            self.manifest = None
            pool.stop()

    def _write(self, manifest: Manifest) -> None:
        """Write `manifest`, the run's from now on (in the state too)."""
        self.store.write_manifest(manifest)
        self.manifest = self.state.manifest = manifest

    def admit(self, i: int, info: dict[str, Any]) -> None:
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
            self._write(admitted)

    def _stack_event(self, before: Manifest, after: Manifest, worker: int) -> None:
        """Announce a stack the run did not record before (`stack_changed` for an allowed change)."""
        new = [r for r in after.stacks if r not in before.stacks]
        for record in new:
            fields = {"worker": worker, "stack": record.stack.id, "versions": record.stack.summary()}
            if record.allowed:
                self.session.event("stack_changed", previous=before.stack.id if before.stack else None, **fields)
            else:
                self.session.event("stack", **fields)

    def measure(self, pool: WorkerPool, i: int) -> str:
        """Render what the run lacks of the first pass (perceptual pacing) on actor `i`, one call per first-pass
        chunk, then measure the walk table in a CPU task; returns the stored table's SHA-256.

        Raises:
            RunError: a first-pass call or the measurement failed (resume renders only what is missing).
        """
        session = self.session
        try:
            if self.job.pacing is not None:
                small = first_pass_job(self.job)
                have = self.store.pacing_frames()
                calls = [[j for j in small.chunk_frames(c) if j not in have] for c in range(small.num_chunks)]
                session.event("first_pass", samples=small.num_frames, missing=small.num_frames - len(have))
                for frames in calls:
                    if frames:
                        session.call(pool, i, "render_first_pass", frames)
            # No CPU reserved: the workers, alive while it runs (they render the first pass), may hold every CPU.
            # Measuring decodes the soundtrack or the first-pass images, so it stays off the driver.
            task = ray.remote(measure_task).options(num_cpus=0, num_gpus=0, max_retries=0)
            sha = session.get(task.remote(self.store.uri, self.job))
        except RayError as exc:
            raise RunError(f"the walk table could not be measured: {describe(exc)}") from None
        session.event("timing_measured", sha256=sha[:12])
        return str(sha)

    def start(self, pool: WorkerPool) -> tuple[int, dict[str, Any], dict[ray.ObjectRef, int]]:
        """Wait for the first renderer to be built (the others join as they come up, e.g. on nodes the
        autoscaler is still adding): its index, its `describe`, and the others' pending readiness checks.

        Raises:
            RunError: no renderer could be built (each died, after its restarts), or none found a node.
        """
        session = self.session
        probes = {a.describe.remote(): i for i, a in enumerate(pool.actors)}
        reasons: list[str] = []
        while probes:
            ready = session.wait(list(probes), starting=session.request)
            for ref in ready:
                i = probes.pop(ref)
                try:
                    return i, ray.get(ref), probes
                except RayActorError as exc:
                    reasons.append(describe(exc))
                    if session.watch is not None:
                        session.watch.poll(now=True)  # the restarts it went through, before its loss
                    session.event("worker_lost", worker=i, reason=reasons[-1])
        raise RunError(f"no renderer could be built ({reasons[-1]})")


def finish(session: Session, store: RunStore, state: RunState, assemble: bool, frames_table: bool) -> list[str]:
    """The job's outputs (with `assemble`), frames.parquet (with either) and the run report, built in a Ray task
    (in-process when Ray was never needed), from the state's index read if it still holds; returns where the
    outputs are. The report is the last thing written under this driver's lock, which it releases next: the
    report does not mention it."""
    releasing = None if session.lock is None else session.lock.token
    args = (session.job, False, assemble, frames_table, releasing, state.index)
    if not ray.is_initialized():
        return assemble_outputs(store, *args)
    return list(session.get(assemble_task().remote(store.uri, *args)))
