"""`RunStore`: the run directory as the other layers use it, one facade over the run's modules.

Storage is the source of truth of a run: resume, status and assembly read only
this. The work is done by the modules of `raywalk.run` (their invariants are
listed there): `fs` (a filesystem with retries), `layout` (the names),
`publish` (whole files), `index`, `records`, `artifacts`, `lifecycle` and `lock`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raywalk.core.job import Job
from raywalk.errors import StoreError
from raywalk.run import artifacts, index, lifecycle, publish, records
from raywalk.run.fs import Bytes, RunFS
from raywalk.run.index import INDEX_SCHEMA, RunIndex
from raywalk.run.layout import (
    FRAMES,
    FRAMES_TABLE,
    KEYFRAMES,
    PACING,
    SMOOTHNESS,
    TIMING,
    frame_file,
    frame_name,
    frame_ranges,
    pacing_name,
    picture_name,
    preview_name,
    soundtrack_name,
)
from raywalk.run.lock import read_lock
from raywalk.run.manifest import Manifest

# Names other layers import from here (kept so their import lines need not change).
__all__ = [
    "FRAMES",
    "FRAMES_TABLE",
    "INDEX_SCHEMA",
    "KEYFRAMES",
    "PACING",
    "SMOOTHNESS",
    "TIMING",
    "RunStore",
    "StoreError",
    "frame_name",
    "frame_ranges",
    "picture_name",
    "preview_name",
    "soundtrack_name",
]


class RunStore:
    """One run directory (local or an object store) by URI; each method calls the module owning its concern."""

    def __init__(self, uri: str | os.PathLike[str], create: bool = False) -> None:
        """Check that `uri` is a usable run location, writing nothing (with `create`, make its root too).

        Bounded (`raywalk.run.retry.OPEN_DEADLINE`): an unreachable store fails in seconds.

        Raises:
            RunLocationError: the URI is empty, malformed, a file, names no bucket or cannot be reached.
        """
        self.files = RunFS(uri)
        self.index = RunIndex(self.files)
        if create:
            self.create()

    def __repr__(self) -> str:
        return f"RunStore({self.uri!r})"

    @property
    def uri(self) -> str:
        return self.files.uri

    @property
    def fs(self) -> pafs.FileSystem:
        return self.files.fs

    @property
    def root(self) -> str:
        return self.files.root

    @property
    def local(self) -> bool:
        return self.files.local

    @property
    def damaged(self) -> list[str]:
        """Index files the last index read could not decode."""
        return self.index.damaged

    def create(self) -> None:
        """Make the run's root (nothing to do if it exists). Raises: StoreError."""
        self.files.create_root()

    def root_exists(self) -> bool:
        """Whether the run's root exists (as a directory, or a prefix holding objects)."""
        return self.files.root_exists()

    # ------------------------------------------------------------------ raw I/O (`raywalk.run.fs`)

    def url(self, name: str = "") -> str:
        """Where `name` lives, for messages: a local path or scheme://bucket/key (no options)."""
        return self.files.url(name)

    def write_bytes(self, name: str, data: Bytes | pa.Buffer) -> None:
        """Write `name` all-or-nothing (`RunFS.write_bytes`). Raises: StoreError."""
        self.files.write_bytes(name, data)

    def read_bytes(self, name: str) -> bytes:
        """The content of `name`. Raises: FileNotFoundError: it does not exist; StoreError."""
        return self.files.read_bytes(name)

    def exists(self, name: str) -> bool:
        """Whether `name` exists as a file in the run."""
        return self.files.exists(name)

    def delete(self, name: str) -> None:
        """Delete `name` if it exists."""
        self.files.delete(name)

    def local_file(self, name: str) -> contextlib.AbstractContextManager[str]:
        """A local path holding the bytes of `name` (`raywalk.run.publish.local_file`)."""
        return publish.local_file(self.files, name)

    # ------------------------------------------------------------------ outputs and failures (`raywalk.run.records`)

    def write_output(self, name: str, data: Bytes, run_id: str | None = None) -> None:
        """Publish output `name` whole, recorded for `run_id` unless it is None (previews). Raises: StoreError."""
        records.write_output(self.files, name, data, run_id)

    def local_output(self, name: str, run_id: str | None = None) -> contextlib.AbstractContextManager[str]:
        """A local path to write output `name` into, published whole if the block succeeds (`records.local_output`)."""
        return records.local_output(self.files, name, run_id)

    def copy_in(self, name: str, source: str | os.PathLike[str], sha256: str, run_id: str) -> None:
        """Copy `source` (a local path or a pyarrow.fs URI) in as `name` if its SHA-256 is `sha256`
        (`records.copy_in`)."""
        records.copy_in(self.files, name, source, sha256, run_id)

    def holds(self, name: str, sha256: str) -> bool:
        """Whether the run holds `name` whole with SHA-256 `sha256`, as `copy_in` recorded it."""
        return records.holds(self.files, name, sha256)

    def output_record(self, name: str) -> dict[str, Any] | None:
        """What was recorded when output `name` was published (bytes, sha256, run_id, written), if anything."""
        return records.output_record(self.files, name)

    def output_ok(self, name: str, run_id: str) -> bool:
        """Whether output `name` is there, whole, from run `run_id`."""
        return records.output_ok(self.files, name, run_id)

    def write_failure(self, chunk: int, info: Mapping[str, Any]) -> None:
        """Record why a chunk gave up (error, attempts, ...)."""
        records.write_failure(self.files, chunk, info)

    def clear_failure(self, chunk: int) -> None:
        """Forget a chunk's failure (it has been rendered since)."""
        records.clear_failure(self.files, chunk)

    def read_failures(self) -> dict[int, dict[str, Any]]:
        """Recorded failures by chunk number; a damaged record is left out with a warning naming it."""
        return records.read_failures(self.files)

    # ------------------------------------------------------------------ manifest (`raywalk.run.lifecycle`)

    def write_manifest(self, manifest: Manifest) -> None:
        """Record the run's manifest (see `raywalk.run.manifest`)."""
        lifecycle.write_manifest(self.files, manifest)

    def read_manifest(self) -> Manifest | None:
        """The run's manifest, validated, or None for a new run. Raises: ManifestError: it is damaged."""
        return lifecycle.read_manifest(self.files)

    def require_manifest(self) -> Manifest:
        """The run's manifest. Raises: RunLocationError: the location holds no run."""
        return lifecycle.require_manifest(self.files)

    def read_job(self) -> Job:
        """The job this run renders, from its manifest; RunLocationError if the location holds no run."""
        return self.require_manifest().job

    def start_fresh(self, manifest: Manifest) -> None:
        """Begin a new run over whatever the location holds, fencing the old one off first (`lifecycle`)."""
        lifecycle.start_fresh(self.files, manifest)

    def adopt(self, job: Job) -> Manifest:
        """Repair a run of `job` whose manifest is damaged, keeping its done frames (`lifecycle.adopt`)."""
        return lifecycle.adopt(self.files, self.index, job)

    # ------------------------------------------------------------------ computed once (`raywalk.run.artifacts`)

    def write_keyframes(self, keyframes: artifacts.Keyframes, pictures: np.ndarray | None = None) -> str:
        """Store the prompts' encodings (and the pictures' latents); returns their SHA-256 for the manifest."""
        return artifacts.write_keyframes(self.files, keyframes, pictures)

    def read_keyframes(self, expected_sha256: str | None = None) -> np.ndarray | dict[str, np.ndarray] | None:
        """The stored keyframe encodings, or None if missing, damaged or not the expected ones."""
        return artifacts.read_keyframes(self.files, expected_sha256)

    def write_timing(self, table: np.ndarray) -> str:
        """Store the walk table; returns its SHA-256 for the manifest."""
        return artifacts.write_timing(self.files, table)

    def read_timing(self, expected_sha256: str | None) -> np.ndarray | None:
        """The stored walk table if its SHA-256 is `expected_sha256`, else None."""
        return artifacts.read_timing(self.files, expected_sha256)

    def write_pacing_frame(self, sample: int, png: bytes) -> None:
        """Write first-pass image `sample` (pacing/000003.png); rewriting is harmless."""
        self.files.write_bytes(pacing_name(sample), png)

    def read_pacing_frame(self, sample: int) -> bytes:
        """First-pass image `sample`'s PNG; FileNotFoundError if it was never written."""
        return self.files.read_bytes(pacing_name(sample))

    def pacing_frames(self) -> set[int]:
        """The first-pass images the run holds."""
        return artifacts.pacing_frames(self.files)

    def read_smoothness(self, run_id: str) -> np.ndarray | None:
        """Distances from each frame to the next recorded for run `run_id` (smoothness.parquet), or None."""
        return artifacts.read_smoothness(self.files, run_id)

    # ------------------------------------------------------------------ frames and index (`raywalk.run.index`)

    def write_frame(self, frame: int, png: bytes) -> dict[str, Any]:
        """Write a frame's PNG; returns its index fields {file, sha256, bytes}."""
        return index.write_frame(self.files, frame, png)

    def read_frame(self, frame: int) -> bytes:
        """A frame's PNG bytes; FileNotFoundError if it was never written."""
        return self.files.read_bytes(frame_file(frame))

    def write_chunk_index(
        self,
        chunk: int,
        columns: Mapping[str, Sequence[Any]],
        *,
        run_id: str | None = None,
        fingerprint: str | None = None,
        stack: str | None = None,
    ) -> str:
        """Add the index rows one attempt at chunk `chunk` rendered (after their PNGs), stamped with `run_id`
        and `fingerprint` (default: the manifest's) and `stack`; returns the new file's name.

        Raises:
            ValueError: a required column is missing.
            RunLocationError: `run_id` or `fingerprint` is None and the location holds no run.
            StoreError: the write kept failing.
        """
        index.check_columns(chunk, columns)
        if run_id is None or fingerprint is None:
            manifest = self.require_manifest()
            run_id, fingerprint = run_id or manifest.run_id, fingerprint or manifest.fingerprint
        return self.index.write_chunk(chunk, columns, run_id, fingerprint, stack)

    def read_index(self, columns: list[str] | None = None, run_id: str | None = None) -> pa.Table:
        """Every index row in one table (of `run_id` only, if given); damaged files named in `damaged`."""
        return self.index.read(columns, run_id)

    def done_frames(self, num_frames: int, run_id: str | None = None, verify: bool = False) -> np.ndarray:
        """Which of frames 0..num_frames-1 are done for run `run_id` (default: the manifest's), invariant 1.

        Raises:
            RunLocationError: `run_id` is None and the location holds no run.
            StoreError: storage kept failing.
        """
        return self.index.scan(num_frames, self._run_id(run_id), verify)

    def missing_frames(self, num_frames: int, run_id: str | None = None, verify: bool = False) -> list[int]:
        """Frames of 0..num_frames-1 that are not done for run `run_id` (default: the manifest's), in order."""
        return np.flatnonzero(~self.done_frames(num_frames, run_id, verify)).tolist()

    def frame_rows(self, num_frames: int, run_id: str | None = None) -> tuple[np.ndarray, pa.Table]:
        """`done_frames` and, from the same read, the newest row behind each done frame (`RunIndex.frame_rows`)."""
        return self.index.frame_rows(num_frames, self._run_id(run_id))

    def _run_id(self, run_id: str | None) -> str:
        return self.require_manifest().run_id if run_id is None else run_id

    def write_frames_table(self, rows: pa.Table, run_id: str) -> str:
        """Publish frames.parquet (`frame_rows`' table of a complete run) for run `run_id`; returns where."""
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink)
        self.write_output(FRAMES_TABLE, sink.getvalue(), run_id)
        return self.url(FRAMES_TABLE)

    def move_damaged(self) -> list[str]:
        """Move the index files the last read found damaged to damaged/; returns the new names."""
        return self.index.move_damaged()

    def moved_damaged(self) -> list[str]:
        """The index files `move_damaged` set aside in damaged/."""
        return self.index.moved_damaged()

    # ------------------------------------------------------------------ lock (`raywalk.run.lock`)

    def read_lock(self) -> dict[str, Any] | None:
        """The run's lock record (host, pid, owner, heartbeat time), if any."""
        return read_lock(self.files)
