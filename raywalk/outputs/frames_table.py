"""frames.parquet: the newest index row of each frame of a complete run, in one file for readers.

It is published from the same read of the index that checks the frames, after
moving the index files found damaged to damaged/ (every frame is done again
without them), so that readers of index/ see only whole files.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from raywalk.run.store import RunStore

log = logging.getLogger(__name__)


def publish_rows(store: RunStore, rows: pa.Table, run_id: str) -> str:
    """Move the index files the read of `rows` found damaged to damaged/, then publish `rows` (`frame_rows`'
    table of complete run `run_id`) as frames.parquet; returns where.

    Raises:
        StoreError: a move or the write kept failing.
    """
    for name in store.move_damaged():
        log.warning(
            "%s: a damaged index file, moved out of index/ (every frame is done again without it)", store.url(name)
        )
    return store.write_frames_table(rows, run_id)


def publish_frames_table(
    store: RunStore, num_frames: int, run_id: str, rows: tuple[np.ndarray, pa.Table] | None = None
) -> str | None:
    """Publish frames.parquet, one row per frame (its newest index row), if run `run_id` is complete, after
    moving the index files found damaged to damaged/; returns where, or None (frames missing: nothing done).

    `rows` is `store.frame_rows(num_frames, run_id)` when the caller has read it already (from this store, whose
    `damaged` it set); by default it is read here.

    Raises:
        StoreError: the index cannot be read, or a move or the write kept failing.
    """
    done, table = store.frame_rows(num_frames, run_id) if rows is None else rows
    return publish_rows(store, table, run_id) if done.all() else None
