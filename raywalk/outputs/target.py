"""Which frames an output is built from, and under which name: the check of the run before any output.

Without `partial`, every frame must be there and an output goes under its
final name, recorded for the run. Partial outputs (previews, `raywalk assemble
--partial`) go under `preview/` and say PARTIAL in their metadata; final names
are written only when every frame is there, so a reader never sees half an
animation under a final name.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from raywalk.core.commands import resume_command
from raywalk.errors import AssembleError
from raywalk.outputs.frames_table import publish_rows
from raywalk.run.store import RunStore, frame_ranges, preview_name

log = logging.getLogger(__name__)


class MissingFramesError(AssembleError):
    """The run lacks frames and partial assembly was not asked for."""

    def __init__(self, message: str, missing: list[int], num_frames: int):
        super().__init__(message)
        self.missing = missing
        self.num_frames = num_frames


class Target(NamedTuple):
    """What to build an output from and where: its frames, name, the run id to record it for (None for a
    preview) and the note its metadata carries."""

    frames: list[int]
    name: str
    run_id: str | None
    note: str


def available_frames(
    store: RunStore, num_frames: int, run_id: str, partial: bool = False, done: np.ndarray | None = None
) -> list[int]:
    """Done frames of run `run_id` among 0..num_frames-1 in order (`done`, `store.done_frames(num_frames,
    run_id)`, is read unless given).

    Raises:
        MissingFramesError: frames are missing and not `partial`.
        AssembleError: no frame is done.
    """
    return done_list(store, store.done_frames(num_frames, run_id) if done is None else done, partial)


def done_list(store: RunStore, done: np.ndarray, partial: bool) -> list[int]:
    """The frames `done` marks, in order.

    Raises:
        MissingFramesError: frames are missing and not `partial` (with it, a warning names them).
        AssembleError: no frame is done.
    """
    num_frames = len(done)
    frames = np.flatnonzero(done).tolist()
    if len(frames) < num_frames:
        missing = np.flatnonzero(~done).tolist()
        message = (
            f"{len(missing)} of {num_frames} frames missing ({frame_ranges(missing)}): "
            f"run `{resume_command(store.uri)}`"
        )
        if not partial:
            raise MissingFramesError(message, missing, num_frames)
        log.warning("partial outputs, %s", message)
    if not frames:
        raise AssembleError(f"{store.uri}: no frames rendered yet")
    return frames


def target(
    store: RunStore,
    num_frames: int,
    name: str,
    partial: bool,
    note: str = "",
    run_id: str | None = None,
    frames_table: bool = False,
    rows: tuple[np.ndarray, pa.Table] | None = None,
) -> Target:
    """The `Target` of output `name` over frames 0..num_frames-1 of run `run_id` (default: the manifest's).

    The run is checked once: without `partial`, every frame must be there and
    the output goes under its final name, recorded for the run (and, with
    `frames_table`, frames.parquet is published from the same read of the
    index: `publish_rows`); with it, the output is a preview under preview/,
    unrecorded, whose note says PARTIAL. `rows` is `store.frame_rows(num_frames,
    run_id)` when the caller has read it already; only its done mask is used
    without `frames_table`.

    Raises:
        MissingFramesError: frames are missing and not `partial`.
        AssembleError: no frame is done.
    """
    run_id = store.require_manifest().run_id if run_id is None else run_id
    if frames_table and not partial:
        done, table = store.frame_rows(num_frames, run_id) if rows is None else rows
        frames = done_list(store, done, partial)
        publish_rows(store, table, run_id)
    else:
        frames = done_list(store, store.done_frames(num_frames, run_id) if rows is None else rows[0], partial)
    if not partial:
        return Target(frames, name, run_id, note)
    marker = f"PARTIAL: {len(frames)} of {num_frames} frames"
    return Target(frames, preview_name(name), None, f"{marker}; {note}" if note else marker)
