"""What a run holds, read once: the manifest, the done frames, the recorded failures (`RunState`), and the one
read of the index they come from (`IndexRead`), which assembly, smoothness and the report share.

A render reads the index at most once at its start (none for a fresh run, whose index is empty) and once at its
end; in between it knows what changed, since it rendered it (`RunState.rendered`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raywalk.concurrency import bounded_map
from raywalk.run.manifest import Manifest
from raywalk.run.store import FRAMES, INDEX_SCHEMA, RunStore, frame_name

_READERS = min(8, 2 * (os.cpu_count() or 1))  # frames hashed at once with `verify`


@dataclasses.dataclass(frozen=True)
class IndexRead:
    """One read of a run's index: every row of run `run_id` (duplicates included, INDEX_SCHEMA) and which of
    frames 0..N-1 are done, that is, have a row of the run whose PNG exists with the size the row records
    (and the hash, with `verify`): the store's invariant 1, as `RunStore.done_frames` decides it."""

    run_id: str
    rows: pa.Table
    done: np.ndarray
    matching: np.ndarray  # per row: its frame's PNG exists with the size it records

    @property
    def missing(self) -> list[int]:
        """The frames not done, in order."""
        return np.flatnonzero(~self.done).tolist()

    def newest_rows(self) -> pa.Table:
        """The newest row behind each done frame, every column, sorted by frame: what frames.parquet holds
        (`RunStore.frame_rows`' table)."""
        frame = self.rows["frame"].fill_null(-1).to_numpy(zero_copy_only=False)
        making = self.matching & self.done[np.where(self.matching, frame, 0)]
        rows = self.rows.filter(pa.array(making))
        if not rows.num_rows:
            return INDEX_SCHEMA.empty_table()
        rows = rows.sort_by([("frame", "ascending"), ("written", "descending")])  # a null `written` sorts last
        frames = rows["frame"].to_numpy()
        newest = np.concatenate([[True], frames[1:] != frames[:-1]])
        return rows.filter(pa.array(newest))


def frame_sizes(store: RunStore, num_frames: int) -> np.ndarray:
    """The size of each of frames 0..num_frames-1 in frames/ (-1 where it is absent), from one listing.

    Raises:
        StoreError: storage kept failing.
    """
    sizes = np.full(num_frames, -1, dtype=np.int64)
    for info in store.files.list(FRAMES):  # retried listing: frames/ holds the frames and nothing else
        stem = info.base_name.removesuffix(".png")
        if stem.isdigit() and int(stem) < num_frames and info.base_name == frame_name(int(stem)):
            sizes[int(stem)] = info.size
    return sizes


def read_index(store: RunStore, num_frames: int, run_id: str, verify: bool = False) -> IndexRead:
    """Read the index of run `run_id` once (`RunStore.read_index`, which names damaged files in
    `store.damaged`) and list frames/ once: the rows and the done frames among 0..num_frames-1.

    Raises:
        StoreError: storage kept failing.
    """
    rows = store.read_index(run_id=run_id)
    sizes = frame_sizes(store, num_frames)
    frame = rows["frame"].fill_null(-1).to_numpy(zero_copy_only=False)
    ok = (frame >= 0) & (frame < num_frames)
    frame = np.where(ok, frame, 0)
    expected = pc.binary_join_element_wise(
        FRAMES + "/", pc.utf8_lpad(pc.cast(pa.array(frame), pa.string()), 6, "0"), ".png", ""
    )
    ok &= pc.fill_null(pc.equal(rows["file"], expected), False).to_numpy(zero_copy_only=False)
    ok &= rows["bytes"].fill_null(-2).to_numpy(zero_copy_only=False) == sizes[frame]
    done = np.zeros(num_frames, dtype=bool)
    if not verify:
        done[frame[ok]] = True
        return IndexRead(run_id, rows, done, ok)
    digests: dict[int, set[str]] = {}
    for f, digest in zip(frame[ok].tolist(), rows["sha256"].filter(pa.array(ok)).to_pylist()):
        digests.setdefault(f, set()).add(digest)

    def intact(item: tuple[int, set[str]]) -> bool:
        try:
            return hashlib.sha256(store.read_frame(item[0])).hexdigest() in item[1]
        except FileNotFoundError:
            return False

    for (f, _), good in zip(digests.items(), bounded_map(intact, digests.items(), _READERS)):
        done[f] = good
    return IndexRead(run_id, rows, done, ok)


@dataclasses.dataclass
class RunState:
    """One render's view of its run: the manifest, the frames still missing, the failures recorded, and the
    index read they came from while it still holds (None once the render changed the run)."""

    manifest: Manifest
    missing: list[int]
    failures: dict[int, dict[str, Any]]
    index: IndexRead | None = None

    @classmethod
    def read(cls, store: RunStore, manifest: Manifest, verify: bool = False) -> RunState:
        """The state of the run `manifest` describes: one read of its index, one of its failures.

        Raises:
            StoreError: storage kept failing.
        """
        index = read_index(store, manifest.num_frames, manifest.run_id, verify)
        return cls(manifest, index.missing, store.read_failures(), index)

    @classmethod
    def fresh(cls, manifest: Manifest) -> RunState:
        """The state of a run just started: nothing done, nothing failed, no index to read."""
        return cls(manifest, list(range(manifest.num_frames)), {}, None)

    def rendered(self, frames: Iterable[int], failures: dict[int, dict[str, Any]] | None = None) -> None:
        """The render wrote `frames` (and recorded `failures`, if given): they are done, and the index read
        no longer holds."""
        written = set(frames)
        if written:
            self.missing = [f for f in self.missing if f not in written]
            self.index = None
        if failures is not None:
            self.failures = failures
