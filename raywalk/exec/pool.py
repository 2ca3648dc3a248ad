"""The renderer actors of a render (`WorkerPool`) and the announcement of their restarts (`Restarts`)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import ray

from raywalk.core.job import Job
from raywalk.exec.cluster import Request, worker_env
from raywalk.exec.session import POLL

if TYPE_CHECKING:
    from raywalk.exec.session import Session


class WorkerPool:
    """Renderer actors with explicit resources; each restarts (on another node if its own died) at most
    `workers.max_restarts` times."""

    def __init__(self, job: Job, fingerprint: str, uri: str, request: Request, backend: str | None = None):
        from raywalk.exec.worker import RenderWorker

        env = worker_env(request)
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
        self.actors: list[Any] = [
            actor.remote(job, fingerprint, uri) for _ in range(request.count)
        ]  # handles: the job crosses as the validated `Job`, with its fingerprint

    def stop(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)


class Restarts:
    """Announces each actor restart once (`worker_restarting`), whether a chunk call saw the death or
    Ray's state API did (a renderer dying in its constructor fails no call until its restarts run out)."""

    def __init__(self, session: Session, pool: WorkerPool):
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
