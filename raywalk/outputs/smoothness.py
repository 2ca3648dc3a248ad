"""smoothness.parquet: how far each frame of a complete run is from the next (`raywalk.core.pacing.distances`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raywalk.core.pacing import distances
from raywalk.outputs.frames import frame_images
from raywalk.outputs.target import available_frames
from raywalk.run.store import SMOOTHNESS, RunStore


def write_smoothness(store: RunStore, num_frames: int, run_id: str, done: np.ndarray | None = None) -> str:
    """Publish smoothness.parquet for complete run `run_id`: (frame, distance_to_next) for frames 0..N-2, the
    `raywalk.core.pacing.distances` of the frames in order, decoded a few at a time; returns where. `done` is
    `store.done_frames(num_frames, run_id)` when the caller has read it already.

    Raises:
        MissingFramesError: the run lacks frames.
    """
    frames = available_frames(store, num_frames, run_id, done=done)
    d = distances(np.asarray(im) for im in frame_images(store, frames))
    table = pa.table({"frame": pa.array(frames[:-1], pa.int64()), "distance_to_next": pa.array(d, pa.float64())})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    store.write_output(SMOOTHNESS, sink.getvalue().to_pybytes(), run_id)
    return store.url(SMOOTHNESS)
