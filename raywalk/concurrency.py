"""One bounded, in-order thread map, for every place that overlaps I/O with work (index reads, frame loads)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741


def bounded_map(fn: Callable[[I], T], items: Iterable[I], workers: int, ahead: int | None = None) -> Iterator[T]:
    """`map(fn, items)` on `workers` threads, in order, with at most `ahead` (default `workers`) results
    pending, so memory stays bounded however many items there are. Leaving early cancels what is queued."""
    limit = workers if ahead is None else ahead
    pending: deque[Future[T]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="raywalk") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
