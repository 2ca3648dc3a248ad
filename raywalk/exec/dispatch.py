"""The chunk dispatcher: the `ray.wait` loop that keeps the renderer actors busy until every chunk is done."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray
from ray.exceptions import ActorDiedError, RayActorError, RayError, RayTaskError

from raywalk.core.job import Job
from raywalk.errors import RunError, describe
from raywalk.exec.pool import Restarts, WorkerPool
from raywalk.exec.progress import Progress
from raywalk.exec.session import POLL, Session
from raywalk.exec.tasks import assemble_task
from raywalk.run.store import RunStore, frame_ranges

Chunk = tuple[int, range | list[int]]  # (chunk, its frames)


def chunks(job: Job, frames: Iterable[int]) -> Iterator[Chunk]:
    """(chunk, its frames) in order, from sorted frames; a whole chunk is a range, so a fresh run of any
    length costs the driver no memory per frame."""
    size = job.chunking.chunk_size
    current, picked = -1, list[int]()
    for frame in frames:
        if frame // size != current:
            if picked:
                yield current, compact(job, current, picked)
            current, picked = frame // size, []
        picked.append(frame)
    if picked:
        yield current, compact(job, current, picked)


def compact(job: Job, chunk: int, frames: list[int]) -> range | list[int]:
    whole = job.chunk_frames(chunk)
    return whole if len(frames) == len(whole) else frames


class Dispatcher:
    """The ray.wait loop: bounded chunks in flight per actor, re-queue on failure, a watchdog. It keeps the
    frames of the chunks it rendered (`rendered`), so its caller knows what is done without reading the index.
    `admit(i, info)` lets a worker that came up (or back) render, or raises."""

    def __init__(
        self,
        session: Session,
        store: RunStore,
        pool: WorkerPool,
        watch: Restarts,
        usable: set[int],
        probes: dict[ray.ObjectRef, int],
        admit: Callable[[int, dict[str, Any]], None],
        recorded_failures: Iterable[int] = (),
    ):
        self.session, self.job, self.store, self.pool, self.watch = session, session.job, store, pool, watch
        assert session.progress is not None, "a session reports to its progress before it dispatches"
        self.progress: Progress = session.progress
        self.in_flight: dict[ray.ObjectRef, tuple[int, range | list[int], int, int, float]] = {}  # ..., sent at
        self.load = [0] * len(pool.actors)
        self.usable = usable  # actors that take chunks
        self.probes = probes  # readiness checks of actors starting or restarting -> actor index
        self.lost: set[int] = set()
        self.recorded_failures = set(recorded_failures)
        self.admit = admit
        self.rendered: list[int] = []  # frames of the chunks rendered
        self.finished = 0
        self.preview: ray.ObjectRef | None = None
        self.retries: collections.deque = collections.deque()  # chunks to try again, before new ones
        self.chunks: Iterator[Chunk] = iter(())
        self.exhausted = False  # every chunk has been handed out once
        self.last_chunk = time.monotonic()

    def run(self, chunks: Iterator[Chunk]) -> dict[int, str]:
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
        self.preview = assemble_task().remote(self.store.uri, self.job, True)

    def _preview_done(self) -> None:
        if self.preview is None:
            return
        try:
            self.progress.event("preview", outputs=ray.get(self.preview))
        except RayError as exc:
            self.progress.event("preview_failed", reason=describe(exc))
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
            reason = describe(exc)
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
        self.rendered.extend(frames)
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
            self._lost(i, describe(exc))
            return
        except RayActorError:
            time.sleep(POLL)  # restarting: ask again shortly
            self.probes[self.pool.actors[i].describe.remote()] = i
            return
        self.admit(i, info)
        self.usable.add(i)
