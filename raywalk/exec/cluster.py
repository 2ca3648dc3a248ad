"""Ray at the driver's edge: joining or starting a cluster, what each worker reserves, whether a cluster
can ever host it, and shipping a renderer module that workers cannot import by themselves.

Nothing here imports a renderer: a renderer's module may import TensorFlow,
which the driver never does. Its file is found (`importlib.util.find_spec`
finds without executing) and, if it is not part of an installed distribution,
shipped to the workers with Ray's ``runtime_env`` ``py_modules``, so that the
driver and its workers resolve ``module:Class`` the same way: installed
packages first, else the file the driver sees (the current directory, then
``PYTHONPATH``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import socket
import sys
from importlib import metadata
from typing import Any

import ray

from raywalk.core.job import Job
from raywalk.core.limits import MAX_WORKERS
from raywalk.errors import BadInputError, ClusterError, map_exceptions

# What a worker that reserved no GPU starts with: it must not use a GPU (another worker's), nor probe CUDA and log
# the failure (TensorFlow's `E0000 ... failed call to cuInit` on a machine without a GPU driver) at every start.
# TF_CPP_MIN_LOG_LEVEL 3 keeps only TensorFlow's fatal C++ lines (2 still lets that cuInit error through);
# Python exceptions are unaffected. A variable set in the driver's environment is left as it is (a person who
# wants TensorFlow's lines sets TF_CPP_MIN_LOG_LEVEL=0 there; on a local Ray the workers inherit it).
CPU_WORKER_ENV = {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
ANSWER_TIMEOUT = 10.0  # seconds a cluster's address may take to accept a connection, then to answer as gRPC
_started_here = False  # whether this process started its own local Ray (rather than joining a cluster)


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """How many renderer actors, and what each reserves (None: from the job)."""

    count: int | None = None
    gpus: float | None = None
    cpus: float | None = None


@dataclasses.dataclass(frozen=True)
class Request:
    """What the run asks of the cluster: `count` workers of `gpus` GPUs and `cpus` CPUs each."""

    count: int
    gpus: float
    cpus: float

    def __str__(self) -> str:
        return f"{self.count} worker(s) of {self.gpus:g} GPU(s) and {self.cpus:g} CPU(s) each"


def connect(address: str | None, renderer: str | None = None) -> None:
    """Join the Ray cluster at `address` ('auto', 'ray://...') or in RAY_ADDRESS, or start a local one.

    Without either, a new local Ray is started even if other Ray instances run
    on this machine (Ray's own default would join one of them). Ray's start-up
    messages stay out of raywalk's output (`logging_level` error), and the workers'
    lines Ray prints here carry no colour codes unless both stdout and stderr are
    terminals (`RAY_COLOR_PREFIX`, which a user may set). The module of
    `renderer` travels with the job if workers could not import it (`runtime_env`);
    a process that started Ray itself passes that to its own `ray.init`.

    Raises:
        ClusterError: the cluster to join does not answer, or not as Ray does (checked first: Ray itself
            retries for minutes), or Ray cannot connect to it.
    """
    global _started_here
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not (sys.stdout.isatty() and sys.stderr.isatty()):  # read by Ray each time it prints a worker's line
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    target = address or os.environ.get("RAY_ADDRESS")
    _started_here = not target
    if target:
        check_answers(target)
    with map_exceptions({ConnectionError: lambda why: ClusterError(f"cannot join the Ray cluster at {target}: {why}")}):
        ray.init(
            address="local" if _started_here else address,
            logging_level=logging.ERROR,
            log_to_driver=True,
            runtime_env=runtime_env(renderer) if renderer else None,
        )


def check_answers(address: str) -> None:
    """Refuse at once a cluster address ('host:port', 'ray://host:port') at which nothing accepts a connection,
    or something that is not a gRPC server (Ray's GCS and Ray Client both are) answers: the dashboard's port, say,
    or a web server. Ray itself retries either for minutes. Each check waits `ANSWER_TIMEOUT` at most. Other forms
    ('auto', 'local') are left to Ray, and so is the gRPC check where Ray speaks TLS (`RAY_USE_TLS`).

    Raises:
        ClusterError: nothing answers there, or not as Ray does.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or "://" in host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ANSWER_TIMEOUT).close()
    except OSError as exc:
        raise ClusterError(
            f"cannot join the Ray cluster at {address}: nothing answers at {host}:{port} ({exc.strerror or exc})"
        ) from None
    if os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true") and not speaks_grpc(f"{host}:{port}"):
        raise ClusterError(
            f"cannot join the Ray cluster at {address}: {host}:{port} answers, but not as Ray does (no gRPC in"
            f" {ANSWER_TIMEOUT:.0f} s); a cluster's address is its head's GCS port (`ray start --head --port`,"
            " 6379 by default), not its dashboard's"
        )


def speaks_grpc(target: str) -> bool:
    """Whether a gRPC connection to `target` ('host:port') becomes ready within `ANSWER_TIMEOUT`: the HTTP/2
    handshake that any gRPC server completes and a web server does not."""
    import grpc  # Ray's own RPC library, installed with it

    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=ANSWER_TIMEOUT)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


def started_here() -> bool:
    """Whether the connected Ray was started by this process (a single machine raywalk owns)."""
    return _started_here and ray.is_initialized()


def describe_cluster() -> str:
    """The alive nodes' resources, for messages: "2 nodes (largest: 4 CPUs, 1 GPUs); 8 CPUs, 2 GPUs in all"."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    total_cpus = sum(n.get("CPU", 0) for n in nodes)
    total_gpus = sum(n.get("GPU", 0) for n in nodes)
    largest: dict[str, float] = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    return (
        f"{len(nodes)} node(s) (largest: {largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs); "
        f"{total_cpus:g} CPUs, {total_gpus:g} GPUs in all"
    )


def fits(gpus: float, cpus: float) -> bool:
    """Whether some alive node has, in all, the GPUs and CPUs of one worker (busy or not)."""
    return any(
        n["Resources"].get("GPU", 0) >= gpus and n["Resources"].get("CPU", 0) >= cpus
        for n in ray.nodes()
        if n.get("Alive")
    )


def worker_resources(job: Job, spec: WorkerSpec) -> Request:
    """The workers to start: the spec's values, else the job's.

    By default one worker per GPU of the cluster. A Ray that raywalk started on
    a machine without GPUs turns the job's GPU request into a single CPU worker;
    a joined cluster without GPUs (an autoscaler that has not added GPU nodes
    yet) keeps the request, so the waiting workers make the autoscaler add
    nodes, and needs an explicit count.

    Raises:
        BadInputError: more workers than `MAX_WORKERS`; on a Ray started here, a worker no node can ever
            host; on a joined cluster without GPUs, GPU workers without a count.
    """
    gpus = job.workers.gpus if spec.gpus is None else spec.gpus
    cpus = job.workers.cpus if spec.cpus is None else spec.cpus
    count = job.workers.count if spec.count is None else spec.count
    if count > MAX_WORKERS:
        raise BadInputError(f"{count} workers asked for; at most {MAX_WORKERS}")
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if gpus > 0 and cluster_gpus == 0:
        if started_here() and spec.gpus is None:
            gpus = 0.0
        elif not started_here() and count == 0:
            raise BadInputError(
                "the cluster has no GPUs yet: give --workers N so that the autoscaler adds GPU "
                "nodes for them, or --gpus-per-worker 0 for CPU workers"
            )
    if count == 0:
        count = max(1, int(cluster_gpus // gpus)) if gpus > 0 else 1
    request = Request(count, gpus, cpus)
    if started_here() and not fits(gpus, cpus):
        raise BadInputError(
            f"no node can host a worker: {request} asked for, this machine's Ray has {describe_cluster()}"
        )
    return request


def worker_env(request: Request) -> dict[str, str]:
    """The environment variables a worker process (an actor, or the renderer check) of `request` starts with:
    `CPU_WORKER_ENV` for a worker without a GPU, less what the driver's own environment sets."""
    env = CPU_WORKER_ENV if request.gpus == 0 else {}
    return {name: value for name, value in env.items() if name not in os.environ}


def ensure_cwd_importable() -> None:
    """Put the current directory on `sys.path` (as `python -m` does), so that a renderer module beside the
    job is found by `raywalk` as a console script too."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def runtime_env(renderer: str) -> dict[str, Any] | None:
    """Ray's ``runtime_env`` that lets workers import the renderer ``module:Class`` as this driver would.

    None when the module belongs to an installed distribution (workers have it
    like the driver) or cannot be found (the renderer check then says so).
    Otherwise its file, or its top-level package directory, travels as
    ``py_modules``; modules it imports in turn must be installed on the workers.
    Ray takes local paths only in a job's own runtime environment (`ray.init`),
    not per task or actor.
    """
    ensure_cwd_importable()
    top = renderer.partition(":")[0].split(".")[0]
    if top in metadata.packages_distributions():
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    locations = list(spec.submodule_search_locations or [])
    return {"py_modules": [locations[0] if locations else spec.origin]}
