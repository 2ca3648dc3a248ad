"""One render's Ray side (`Session`): joining the cluster and checking the renderer there, bounded waits that
beat the run's lock and announce what they wait for, calls that survive a restarting actor, and events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorDiedError, RayActorError, RayTaskError, RuntimeEnvSetupError

from raywalk.core.job import Job
from raywalk.errors import RendererError, RunError, describe, map_exceptions
from raywalk.exec.cluster import Request, WorkerSpec, connect, describe_cluster, fits, worker_env, worker_resources
from raywalk.exec.interrupts import Interrupts
from raywalk.exec.progress import Progress
from raywalk.exec.tasks import check_task
from raywalk.run.lock import RunLock

if TYPE_CHECKING:
    from raywalk.exec.pool import Restarts, WorkerPool

START_TIMEOUT = 600.0  # seconds a joined cluster may take to offer a node that can host a worker
WATCHDOG = 900.0  # seconds without a finished chunk before a `stalled` event
POLL = 1.0  # seconds between looks at the cluster while waiting
ANNOUNCE_EVERY = 30.0  # seconds between repeated waiting events


class Session:
    """One render's Ray side: its request, the lock it beats on every wait, its progress."""

    def __init__(
        self,
        job: Job,
        address: str | None,
        spec: WorkerSpec,
        start_timeout: float,
        watchdog: float,
    ):
        self.job, self.address, self.spec = job, address, spec
        self.start_timeout, self.watchdog = start_timeout, watchdog
        self.request: Request | None = None
        self.backend: str | None = None  # the Keras backend the renderer's workers start with
        self.lock: RunLock | None = None
        self.interrupts = Interrupts()  # the render's own, set by `render`
        self.watch: Restarts | None = None
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
        env = worker_env(request)
        check = ray.remote(check_task).options(
            num_gpus=request.gpus,
            num_cpus=request.cpus,
            max_retries=0,
            runtime_env={"env_vars": env} if env else None,
        )
        ref = check.remote(self.job.model, list(self.job.prompts), len(self.job.pictures))
        self.wait([ref], request)
        no_env = "the workers could not set up the renderer's environment"
        with map_exceptions(
            {
                RuntimeEnvSetupError: lambda why: RunError(f"{no_env}: {why}"),
                RayTaskError: lambda why: RendererError(f"{self.job.source}: {why}"),
            }
        ):
            self.backend = ray.get(ref)
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

    def call(self, pool: WorkerPool, i: int, method: str, *args: Any) -> Any:
        """`actors[i].method(*args)`, asked again each time the actor's process dies under it and restarts
        (each restart announced), as chunks are; calls outside the dispatch loop (encoding the prompts, the
        first pass) must survive a lost worker too.

        Raises:
            RunError: the actor is gone for good (its restarts used up).
        """
        asked_again = False
        while True:
            sent = time.monotonic()
            try:
                return self.get(getattr(pool.actors[i], method).remote(*args))
            except ActorDiedError as exc:
                raise RunError(f"the renderer died for good during {method} ({describe(exc)})") from None
            except RayActorError as exc:  # its process died: it is restarting, ask it again when it is back
                if self.watch is not None and not asked_again:
                    self.watch.died(i, describe(exc), sent)
                elif self.watch is not None:  # the restart announced may still be under way (the actor is
                    self.watch.poll(now=True)  # unavailable): only Ray's own restart count tells a new death
                asked_again = True
                time.sleep(POLL)
