"""Statistics of a run's index for its report: throughput over time, seconds per frame per worker and node,
retried chunks, worker restarts, and which columns are walk parameters.

Each function takes the index as columns (`pa.Table.to_pydict()` of the rows of
one run, duplicates included), so they are pure and cheap to test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raywalk.run.store import INDEX_SCHEMA

WRITTEN = "written"  # index column: UNIX seconds when the chunk's index was written
NOT_PARAMETERS = {f.name for f in INDEX_SCHEMA} | {WRITTEN}


@dataclass(frozen=True)
class Throughput:
    """Frames per minute in consecutive time bins, per worker and in total.

    `clock` says what the time axis is: "written" is wall-clock time since the
    first chunk began (from the index's `written` column); "seconds" is each
    worker's own cumulative render time (every worker starts at 0), for
    indexes that have no `written` column.
    """

    clock: str
    bin_seconds: float
    starts: np.ndarray  # bin starts, seconds
    workers: dict[str, np.ndarray]  # worker -> frames per minute in each bin
    total: np.ndarray


@dataclass(frozen=True)
class GroupStats:
    """Seconds per frame of one worker or node."""

    name: str
    frames: int
    mean: float
    median: float
    p90: float
    seconds: float  # render seconds in all
    members: tuple[str, ...]  # a worker's nodes, a node's workers


def completion_times(index: Mapping[str, Sequence[Any]]) -> tuple[str, dict[str, np.ndarray]]:
    """When each worker finished each of its frames: (clock, worker -> sorted seconds from the start).

    With a `written` column (all values present), a chunk's frames are spread
    over the render seconds before its index was written, and the start is when
    the earliest chunk began. Without it, each worker's rows are taken in chunk
    and frame order and placed at its cumulative render seconds.
    """
    workers, seconds = list(index["worker"]), np.asarray(index["seconds"], dtype=float)
    frames, chunks = np.asarray(index["frame"]), np.asarray(index["chunk"])
    written = index.get(WRITTEN)
    use_written = written is not None and len(written) > 0 and all(w is not None for w in written)
    times = np.empty(len(seconds))
    if use_written:
        stamps = np.asarray(written, dtype=float)
        groups: dict[tuple[int, float], list[int]] = {}
        for i in np.lexsort((frames, stamps, chunks)):
            groups.setdefault((int(chunks[i]), float(stamps[i])), []).append(int(i))
        starts = []
        for (_, stamp), rows in groups.items():
            starts.append(stamp - seconds[rows].sum())
            times[rows] = starts[-1] + np.cumsum(seconds[rows])
        times -= min(starts)
    else:
        by_worker: dict[str, list[int]] = {}
        for i in np.lexsort((frames, chunks)):
            by_worker.setdefault(workers[i], []).append(int(i))
        for rows in by_worker.values():
            times[rows] = np.cumsum(seconds[rows])
    result: dict[str, list[float]] = {}
    for worker, t in zip(workers, times):
        result.setdefault(worker, []).append(float(t))
    return ("written" if use_written else "seconds"), {w: np.sort(t) for w, t in sorted(result.items())}


def throughput(index: Mapping[str, Sequence[Any]], bins: int | None = None) -> Throughput:
    """Frames per minute over time, per worker and in total (see `completion_times` for the clock).

    The time from 0 to the last frame is cut into `bins` equal bins, so no bin
    is partial; the default, one bin per 20 rows (4 to 60), keeps each bin's
    count large enough that a frame more or less does not look like a change
    of speed.
    """
    clock, times = completion_times(index)
    rows = sum(len(t) for t in times.values())
    if not rows:
        return Throughput(clock, 0.0, np.zeros(0), {}, np.zeros(0))
    bins = bins or min(60, max(4, rows // 20))
    width = max(max(float(t[-1]) for t in times.values()), 1e-6) / bins
    per_worker = {
        w: np.bincount(np.clip(np.ceil(t / width).astype(int) - 1, 0, bins - 1), minlength=bins) * (60 / width)
        for w, t in times.items()
    }
    return Throughput(clock, width, np.arange(bins) * width, per_worker, np.sum(list(per_worker.values()), axis=0))


def _group_stats(index: Mapping[str, Sequence[Any]], key: str, other: str) -> list[GroupStats]:
    seconds: dict[str, list[float]] = {}
    members: dict[str, set[str]] = {}
    for k, o, s in zip(index[key], index[other], index["seconds"]):
        seconds.setdefault(k, []).append(s)
        members.setdefault(k, set()).add(o)
    return [
        GroupStats(
            k,
            len(s),
            float(np.mean(s)),
            float(np.median(s)),
            float(np.percentile(s, 90)),
            float(np.sum(s)),
            tuple(sorted(members[k])),
        )
        for k, s in sorted(seconds.items())
    ]


def worker_stats(index: Mapping[str, Sequence[Any]]) -> list[GroupStats]:
    """Seconds per frame of each worker (members: the nodes it rendered on), by worker id."""
    return _group_stats(index, "worker", "node")


def node_stats(index: Mapping[str, Sequence[Any]]) -> list[GroupStats]:
    """Seconds per frame of each node (members: the workers that rendered there), by node id."""
    return _group_stats(index, "node", "worker")


def retried_chunks(index: Mapping[str, Sequence[Any]]) -> dict[int, tuple[int, int]]:
    """Chunks whose rows came from a later attempt: chunk -> (highest attempt, rows from attempts > 1)."""
    retried: dict[int, tuple[int, int]] = {}
    for chunk, attempt in zip(index["chunk"], index["attempt"]):
        if attempt > 1:
            top, rows = retried.get(chunk, (1, 0))
            retried[chunk] = (max(top, attempt), rows + 1)
    return dict(sorted(retried.items()))


def worker_restarts(index: Mapping[str, Sequence[Any]]) -> dict[str, int]:
    """Worker -> restarts, for workers that restarted, as a lower bound read from the index: a worker (a Ray
    actor, whose id survives restarts) seen on n nodes restarted at least n - 1 times."""
    counts = {stats.name: len(stats.members) - 1 for stats in worker_stats(index)}
    return {w: n for w, n in sorted(counts.items()) if n}


def walk_parameters(table: pa.Table) -> list[str]:
    """The index's numeric trajectory-parameter columns (`t`, `segment`, `row`, `theta`, ...), in order."""
    return [
        f.name
        for f in table.schema
        if f.name not in NOT_PARAMETERS and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
    ]
