"""The run's Parquet index: one file of rows per chunk attempt, read back as which frames are done.

Enforces invariants 1, 2 and (for index files) 6 of the run directory (see
`raywalk.run`): a frame is done only if its PNG matches a row of the current
run; writers only add files; damaged files count as their rows missing and are
moved aside once the run is complete.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raywalk.concurrency import bounded_map
from raywalk.errors import describe
from raywalk.run.fs import RunFS
from raywalk.run.layout import DAMAGED, FRAMES, INDEX, frame_file, frame_name, index_file_name, is_index_file
from raywalk.run.manifest import LEGACY_RUN_ID

INDEX_SCHEMA = pa.schema(
    [
        ("frame", pa.int64()),
        ("file", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("chunk", pa.int32()),
        ("attempt", pa.int32()),
        ("node", pa.string()),
        ("worker", pa.string()),
        ("seconds", pa.float64()),
        ("run_id", pa.string()),  # the manifest's run id when the chunk was rendered
        ("fingerprint", pa.string()),  # the job's fingerprint
        ("written", pa.float64()),  # UNIX seconds when the chunk's index file was written
        ("parameters", pa.string()),  # the text the frame's PNG carries (`raywalk.core.frameinfo`); null in format 1
        ("stack", pa.string()),  # the id of the worker's model stack (raywalk.core.stack); null in older files
    ]
)
_STAMPED = ("run_id", "fingerprint", "written", "stack")  # filled in by `chunk_table`
_OPTIONAL = ("parameters",)  # null where `columns` lacks them
_REQUIRED = ("frame", "file", "sha256", "bytes")  # what every index file has held, since the first version
_READERS = 8  # index files read at once: the memory bound of an index scan


def index_field(name: str) -> pa.Field:
    """An index column's field: INDEX_SCHEMA's, or untyped for a trajectory parameter."""
    return INDEX_SCHEMA.field(name) if name in INDEX_SCHEMA.names else pa.field(name, pa.null())


def _index_columns(table: pa.Table, columns: list[str] | None) -> pa.Table:
    """`table` with `columns` only, or (None) INDEX_SCHEMA's first, then the others in their order."""
    if columns is None:
        columns = INDEX_SCHEMA.names + [c for c in table.column_names if c not in INDEX_SCHEMA.names]
    return table.select(columns)


def write_frame(files: RunFS, frame: int, png: bytes) -> dict[str, Any]:
    """Write a frame's PNG; returns its index fields {file, sha256, bytes}. Raises: StoreError."""
    file = frame_file(frame)
    files.write_bytes(file, png)
    return {"file": file, "sha256": hashlib.sha256(png).hexdigest(), "bytes": len(png)}


def check_columns(chunk: int, columns: Mapping[str, Sequence[Any]]) -> None:
    """Raises: ValueError: `columns` lacks a column every index row needs."""
    missing = [f.name for f in INDEX_SCHEMA if f.name not in columns and f.name not in _STAMPED + _OPTIONAL]
    if missing:
        raise ValueError(f"chunk {chunk} index lacks columns {', '.join(missing)}")


def chunk_table(
    chunk: int, columns: Mapping[str, Sequence[Any]], run_id: str, fingerprint: str, stack: str | None
) -> pa.Table:
    """The index rows of one chunk attempt: `columns` (INDEX_SCHEMA's, `parameters` optional, plus extra
    ones that keep the types pyarrow infers), each row stamped with `run_id`, `fingerprint`, `stack` and
    (unless `columns` has it) the time.

    Raises:
        ValueError: a required column is missing.
    """
    check_columns(chunk, columns)
    rows = len(columns["frame"])
    stamps = {
        "run_id": [run_id] * rows,
        "fingerprint": [fingerprint] * rows,
        "written": columns.get("written", [time.time()] * rows),
        "stack": columns.get("stack", [stack] * rows),
    }
    arrays = {
        f.name: pa.array(stamps[f.name] if f.name in _STAMPED else columns.get(f.name, [None] * rows), type=f.type)
        for f in INDEX_SCHEMA
    }
    for name, values in columns.items():
        if name not in arrays:
            if isinstance(values, np.ndarray) and values.ndim > 1:
                values = list(values)
            arrays[name] = pa.array(values)
    return pa.table(arrays)


def _decode(raw: bytes, columns: list[str] | None) -> pa.Table:
    """One index file's rows (only `columns`, if given), typed as INDEX_SCHEMA, missing columns null.

    Raises:
        ValueError, OSError, pa.ArrowException: not a Parquet file, or not an index's columns or types.
    """
    parquet = pq.ParquetFile(pa.BufferReader(raw))
    names = parquet.schema_arrow.names
    lacking = [c for c in _REQUIRED if c not in names]
    if lacking:
        raise ValueError(f"not an index file: no column {', '.join(lacking)}")
    # One thread per file (the callers map over files): see `raywalk.run.current._all_done` on Arrow's pool at exit
    table = parquet.read(columns=None if columns is None else [c for c in columns if c in names], use_threads=False)
    for i, name in enumerate(table.column_names):
        if name in INDEX_SCHEMA.names and table.schema.field(name).type != index_field(name).type:
            table = table.set_column(i, index_field(name), pc.cast(table[name], index_field(name).type))
    return table


class RunIndex:
    """The index of one run: chunk files added, read back a few at a time; `damaged` names the files the
    last read could not decode."""

    def __init__(self, files: RunFS) -> None:
        self.files = files
        self.damaged: list[str] = []

    def write_chunk(
        self, chunk: int, columns: Mapping[str, Sequence[Any]], run_id: str, fingerprint: str, stack: str | None
    ) -> str:
        """Add the rows of one attempt at chunk `chunk` (`chunk_table`) as a file of their own; returns its name.

        Raises:
            ValueError: a required column is missing.
            StoreError: the write kept failing.
        """
        sink = pa.BufferOutputStream()
        pq.write_table(chunk_table(chunk, columns, run_id, fingerprint, stack), sink)
        name = index_file_name(chunk)
        self.files.write_bytes(name, sink.getvalue())
        return name

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Each index file's rows (only `columns`, if given), a few files at a time.

        A file that cannot be decoded (truncated, garbage), or a `chunk-*` file
        without an index's columns (`_REQUIRED`, INDEX_SCHEMA's types), counts
        as no rows: it is named in `damaged` and in one warning. Any other
        file in index/ is not the index: named in one warning and skipped. A
        missing `run_id` (rows from before run ids) reads as LEGACY_RUN_ID.

        Raises:
            StoreError: storage kept failing.
        """
        files = self.files
        listed = sorted(i.base_name for i in files.list(INDEX))
        for base in listed:
            if not is_index_file(base):
                where = files.url(f"{INDEX}/{base}")
                files.warn_once(
                    f"{INDEX}/{base}", f"{where} is not a raywalk index file (those are chunk-*.parquet); ignoring it"
                )
        names = [f"{INDEX}/{base}" for base in listed if is_index_file(base)]
        self.damaged = []

        def load(name: str) -> pa.Table | None:
            try:
                raw = files.read_bytes(name)
            except FileNotFoundError:  # deleted since the listing (a fresh start)
                return None
            try:
                table = _decode(raw, columns)
            except (ValueError, OSError, pa.ArrowException) as exc:
                self.damaged.append(name)
                files.warn_once(name, f"{files.url(name)} is damaged ({describe(exc)}); its frames count as missing")
                return None
            for field in INDEX_SCHEMA if columns is None else map(index_field, columns):
                if field.name not in table.column_names:
                    table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            if "run_id" in table.column_names:
                i = table.column_names.index("run_id")
                table = table.set_column(i, INDEX_SCHEMA.field("run_id"), table["run_id"].fill_null(LEGACY_RUN_ID))
            return table if columns is None else table.select(columns)

        for table in bounded_map(load, names, _READERS):
            if table is not None:
                yield table

    def read(self, columns: list[str] | None = None, run_id: str | None = None) -> pa.Table:
        """Every index row in one table (of `run_id` only, if given), duplicates included; empty, with
        INDEX_SCHEMA, when there are none. Damaged files are skipped and named in `damaged`.

        Raises:
            StoreError: storage kept failing.
        """
        wanted = columns if run_id is None or columns is None or "run_id" in columns else [*columns, "run_id"]
        tables = list(self.tables(wanted))
        if run_id is not None:
            tables = [t.filter(pc.equal(t["run_id"], run_id)) for t in tables]
        schema = INDEX_SCHEMA if columns is None else pa.schema(map(index_field, columns))
        if not any(t.num_rows for t in tables):
            return schema.empty_table()
        return _index_columns(pa.concat_tables([t for t in tables if t.num_rows], promote_options="default"), columns)

    def frame_sizes(self, num_frames: int) -> np.ndarray:
        """The size of each of frames 0..num_frames-1's PNG, -1 where there is none (one listing of frames/)."""
        sizes = np.full(num_frames, -1, dtype=np.int64)
        for info in self.files.list(FRAMES):
            stem = info.base_name.removesuffix(".png")
            if stem.isdigit() and int(stem) < num_frames and info.base_name == frame_name(int(stem)):
                sizes[int(stem)] = info.size
        return sizes

    def scan(self, num_frames: int, run_id: str, verify: bool, kept: list[pa.Table] | None = None) -> np.ndarray:
        """Which of frames 0..num_frames-1 are done for run `run_id` (invariant 1), adding to `kept` (if
        given) the rows, every column, that make their frames done.

        `frames/` is listed once and the index is read a few files at a time,
        only the columns needed, into numpy arrays of num_frames entries. A
        frame indexed more than once is done if any of its rows of the run
        matches the file (and, with `verify`, its SHA-256).

        Raises:
            StoreError: storage kept failing.
        """
        sizes = self.frame_sizes(num_frames)
        done = np.zeros(num_frames, dtype=bool)
        digests: dict[int, set[str]] = {}  # with verify only: the recorded hashes of candidate frames
        columns = None if kept is not None else ["frame", "file", "bytes", "run_id"] + (["sha256"] if verify else [])
        for table in self.tables(columns):
            for batch in table.to_batches():
                frame = batch.column("frame").fill_null(-1).to_numpy(zero_copy_only=False)
                ok = (frame >= 0) & (frame < num_frames)
                frame = np.where(ok, frame, 0)
                expected = pc.binary_join_element_wise(
                    FRAMES + "/", pc.utf8_lpad(pc.cast(pa.array(frame), pa.string()), 6, "0"), ".png", ""
                )
                ok &= pc.fill_null(pc.equal(batch.column("file"), expected), False).to_numpy(zero_copy_only=False)
                ok &= pc.fill_null(pc.equal(batch.column("run_id"), run_id), False).to_numpy(zero_copy_only=False)
                ok &= batch.column("bytes").fill_null(-2).to_numpy(zero_copy_only=False) == sizes[frame]
                if kept is not None:
                    kept.append(pa.Table.from_batches([batch.filter(pa.array(ok))]))
                if not verify:
                    done[frame[ok]] = True
                    continue
                for f, digest in zip(frame[ok].tolist(), batch.column("sha256").filter(pa.array(ok)).to_pylist()):
                    digests.setdefault(f, set()).add(digest)
        if verify:

            def intact(item: tuple[int, set[str]]) -> bool:
                try:
                    return hashlib.sha256(self.files.read_bytes(frame_file(item[0]))).hexdigest() in item[1]
                except FileNotFoundError:
                    return False

            for (f, _), ok in zip(digests.items(), bounded_map(intact, digests.items(), _READERS)):
                done[f] = ok
        return done

    def frame_rows(self, num_frames: int, run_id: str) -> tuple[np.ndarray, pa.Table]:
        """`scan(num_frames, run_id)` and, from the same read, the newest row of `run_id` behind each done
        frame (every column, sorted by frame): what frames.parquet holds. Raises: StoreError."""
        kept: list[pa.Table] = []
        done = self.scan(num_frames, run_id, False, kept)
        kept = [t for t in kept if t.num_rows]
        if not kept:
            return done, INDEX_SCHEMA.empty_table()
        rows = pa.concat_tables(kept, promote_options="default")
        rows = rows.sort_by([("frame", "ascending"), ("written", "descending")])  # a null `written` sorts last
        frames = rows["frame"].to_numpy()
        newest = np.concatenate([[True], frames[1:] != frames[:-1]])
        return done, _index_columns(rows.filter(pa.array(newest)), None)

    def newest_run(self, fingerprint: str) -> tuple[str | None, bool]:
        """The run id of the newest rows of the job with `fingerprint` (None if it has none), and whether any
        row of that run carries a frame text (format 2). Raises: StoreError."""
        newest, run_id = -1.0, None
        texts: dict[str, bool] = {}  # run id -> whether any of its rows has a frame text
        for table in self.tables(["fingerprint", "written", "run_id", "parameters"]):
            rows = table.filter(pc.fill_null(pc.equal(table["fingerprint"], fingerprint), False))
            if rows.num_rows:
                written = rows["written"].fill_null(0.0).to_numpy()
                if written.max() > newest:
                    newest, run_id = float(written.max()), rows["run_id"][int(written.argmax())].as_py()
                for rid, text in zip(rows["run_id"].to_pylist(), rows["parameters"].to_pylist()):
                    texts[rid] = texts.get(rid, False) or text is not None
        return run_id, run_id is not None and texts[run_id]

    def move_damaged(self) -> list[str]:
        """Move the files the last read found damaged to damaged/ (same names), out of the way of readers;
        for a complete run only. Returns the new names.

        Raises:
            StoreError: a move kept failing (the files not yet moved stay in index/).
        """
        moved = []
        for name in self.damaged:
            target = f"{DAMAGED}/{name.rsplit('/', 1)[-1]}"
            self.files.move(name, target)
            moved.append(target)
        self.damaged = []
        return moved

    def moved_damaged(self) -> list[str]:
        """The index files `move_damaged` set aside in damaged/."""
        return sorted(f"{DAMAGED}/{i.base_name}" for i in self.files.list(DAMAGED))
