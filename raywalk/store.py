"""The run directory: frames, their Parquet index, manifest, failures and lock.

Storage is the source of truth of a run: a frame is done when its PNG and
its chunk's index row are both written, and resume reads only this. Every
location goes through ``pyarrow.fs``, so a run lives on a local or NFS path or
in an object store (``s3://bucket/run?endpoint_override=host:port&scheme=http``,
``gs://...``) with the same code.

Layout under the run root::

    manifest.json                  the job, its fingerprint, package versions
    keyframes.npy                  one text encoding per prompt
    frames/000042.png              one PNG per frame
    index/chunk-000007.parquet     one index file per chunk, overwritten on retry
    failures/chunk-000007.json     why a chunk gave up
    lock.json                      the driver rendering the run, with a heartbeat
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raywalk.errors import RunLocationError, StoreError
from raywalk.manifest import Manifest, ManifestError
from raywalk.spec import Job

MANIFEST = "manifest.json"
KEYFRAMES = "keyframes.npy"
FRAMES = "frames"
INDEX = "index"
FAILURES = "failures"

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
    ]
)

_COPY_BLOCK = 8 << 20


def frame_name(frame: int) -> str:
    """File name of a frame's PNG: six digits at least, so names sort in frame order."""
    return f"{frame:06d}.png"


def frame_ranges(frames: Iterable[int]) -> str:
    """Frames as compact ranges for messages: [3, 4, 5, 9] -> "3-5, 9"."""
    parts: list[str] = []
    start = prev = None
    for f in sorted(set(frames)):
        if prev is not None and f == prev + 1:
            prev = f
            continue
        if start is not None:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        start = prev = f
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def _with_s3_defaults(uri: str) -> str:
    # Delayed open sends a small file (a frame, an index) as one PUT instead
    # of a three-request multipart upload; the URI's own choice wins.
    if uri.startswith("s3://") and "allow_delayed_open" not in uri:
        return uri + ("&" if "?" in uri else "?") + "allow_delayed_open=true"
    return uri


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class RunStore:
    """One run directory, local or in an object store, addressed by a URI."""

    def __init__(self, uri: str | os.PathLike[str], create: bool = True):
        """Open the run at `uri`; with `create`, make its root if needed (else it must exist)."""
        self.uri = os.fspath(uri)
        try:
            if "://" in self.uri:
                self.fs, self.root = pafs.FileSystem.from_uri(_with_s3_defaults(self.uri))
            else:
                self.fs = pafs.LocalFileSystem()
                self.root = os.path.abspath(os.path.expanduser(self.uri))
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise RunLocationError(f"{self.uri}: not a usable run location: {_one_line(exc)}") from None
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.root = self.root.rstrip("/") or self.root
        if not self.root:
            raise RunLocationError(f"{self.uri}: not a usable run location: no bucket named")
        self._made_dirs: set[str] = set()
        with self._errors("cannot open run location"):
            if create:
                self.fs.create_dir(self.root, recursive=True)
            elif self.fs.get_file_info(self.root).type == pafs.FileType.NotFound:
                raise RunLocationError(f"{self.uri}: no run there")

    def __repr__(self) -> str:
        return f"RunStore({self.uri!r})"

    # ------------------------------------------------------------------ paths and raw I/O

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def url(self, name: str = "") -> str:
        """Where `name` lives, for messages: a local path or scheme://bucket/key (no options)."""
        path = self._path(name) if name else self.root
        return path if self.local else f"{self.uri.split('://', 1)[0]}://{path}"

    @contextlib.contextmanager
    def _errors(self, what: str, missing_ok: bool = False) -> Iterator[None]:
        """Turn storage errors into a one-line StoreError (FileNotFoundError passes with `missing_ok`)."""
        try:
            yield
        except (OSError, pa.ArrowException) as exc:
            if missing_ok and isinstance(exc, FileNotFoundError):
                raise
            raise StoreError(f"{self.uri}: {what}: {_one_line(exc)}") from None

    def _parent_dir(self, path: str) -> str:
        parent = path.rsplit("/", 1)[0]
        if parent not in self._made_dirs:
            self.fs.create_dir(parent, recursive=True)
            self._made_dirs.add(parent)
        return parent

    def _temp_path(self, path: str) -> str:
        # Dot-prefixed, so listings and pyarrow.dataset skip half-written files;
        # the original name stays at the end so tools that go by extension work.
        parent, base = path.rsplit("/", 1)
        return f"{parent}/.tmp-{uuid.uuid4().hex[:12]}-{base}"

    def write_bytes(self, name: str, data: bytes | bytearray | memoryview | pa.Buffer) -> None:
        """Write `name` all-or-nothing: temp file + move locally, one upload on object stores."""
        path = self._path(name)
        with self._errors(f"cannot write {name}"):
            if not self.local:
                with self.fs.open_output_stream(path) as out:
                    out.write(data)
                return
            tmp = self._temp_path(path)
            self._parent_dir(path)
            try:
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.move(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(tmp)
                raise

    def read_bytes(self, name: str) -> bytes:
        """The content of `name`; FileNotFoundError if it does not exist."""
        with self._errors(f"cannot read {name}", missing_ok=True):
            with self.fs.open_input_stream(self._path(name)) as f:
                return f.read()

    def exists(self, name: str) -> bool:
        """Whether `name` exists as a file in the run."""
        with self._errors(f"cannot look up {name}"):
            return self.fs.get_file_info(self._path(name)).type == pafs.FileType.File

    def delete(self, name: str) -> None:
        """Delete `name` if it exists."""
        with self._errors(f"cannot delete {name}", missing_ok=True), contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self._path(name))

    @contextlib.contextmanager
    def local_output(self, name: str) -> Iterator[str]:
        """A local file path to write `name` into; it appears in the run only if the block succeeds.

        For outputs written by other programs or libraries (ffmpeg, encoders
        that want a real file). Local runs get a temp name in the run directory
        moved into place; object-store runs get a local temp file streamed up
        in blocks, so an output of any size never has to fit in memory.
        """
        path = self._path(name)
        if self.local:
            with self._errors(f"cannot write {name}"):
                self._parent_dir(path)
            tmp = self._temp_path(path)
            try:
                yield tmp
                with self._errors(f"cannot write {name}"):
                    self.fs.move(tmp, path)
            finally:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
            return
        with tempfile.TemporaryDirectory(prefix="raywalk-") as tmpdir:
            tmp = os.path.join(tmpdir, os.path.basename(name))
            yield tmp
            with self._errors(f"cannot write {name}"), open(tmp, "rb") as src:
                with self.fs.open_output_stream(path) as out:
                    shutil.copyfileobj(src, out, _COPY_BLOCK)

    def _list(self, subdir: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self._path(subdir), allow_not_found=True)
        with self._errors(f"cannot list {subdir}/"):
            infos = self.fs.get_file_info(selector)
        return [i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")]

    def _write_json(self, name: str, data: Mapping[str, Any]) -> None:
        self.write_bytes(name, json.dumps(data, indent=2, default=str).encode())

    def _read_json(self, name: str) -> dict[str, Any] | None:
        try:
            raw = self.read_bytes(name)
        except FileNotFoundError:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise StoreError(f"{self.uri}: {name} is not valid JSON: {_one_line(exc)}") from None

    # ------------------------------------------------------------------ manifest, keyframes

    def write_manifest(self, manifest: Manifest) -> None:
        """Record the run's manifest (see `raywalk.manifest`)."""
        self._write_json(MANIFEST, manifest.to_json())

    def read_manifest(self) -> Manifest | None:
        """The run's manifest, validated, or None for a new run.

        Raises:
            ManifestError: manifest.json is damaged (one line, with the fix).
        """
        try:
            raw = self.read_bytes(MANIFEST)
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ManifestError(f"{self.url(MANIFEST)} is damaged (not JSON: {_one_line(exc)}); render the job "
                                "file into this run again to repair it (`raywalk render JOB --out RUN`)") from None
        return Manifest.from_json(data, source=self.url(MANIFEST))

    def require_manifest(self) -> Manifest:
        """The run's manifest; RunLocationError if the location holds no run."""
        manifest = self.read_manifest()
        if manifest is None:
            raise RunLocationError(f"{self.uri}: holds no raywalk run (no manifest.json)")
        return manifest

    def read_job(self) -> Job:
        """The job this run renders, from its manifest; RunLocationError if the location holds no run."""
        return self.require_manifest().job

    def write_keyframes(self, keyframes: np.ndarray) -> None:
        """Store the prompts' encodings, computed once and reused by every chunk and resume."""
        buf = io.BytesIO()
        np.save(buf, np.asarray(keyframes), allow_pickle=False)
        self.write_bytes(KEYFRAMES, buf.getbuffer())

    def read_keyframes(self) -> np.ndarray | None:
        """The stored keyframe encodings, or None if not computed yet."""
        try:
            raw = self.read_bytes(KEYFRAMES)
        except FileNotFoundError:
            return None
        return np.load(io.BytesIO(raw), allow_pickle=False)

    # ------------------------------------------------------------------ frames and index

    def write_frame(self, frame: int, png: bytes) -> dict[str, Any]:
        """Write a frame's PNG; returns its index fields {file, sha256, bytes}."""
        file = f"{FRAMES}/{frame_name(frame)}"
        self.write_bytes(file, png)
        return {"file": file, "sha256": hashlib.sha256(png).hexdigest(), "bytes": len(png)}

    def read_frame(self, frame: int) -> bytes:
        """A frame's PNG bytes; FileNotFoundError if it was never written."""
        return self.read_bytes(f"{FRAMES}/{frame_name(frame)}")

    def write_chunk_index(self, chunk: int, columns: Mapping[str, Sequence[Any]]) -> None:
        """Write a chunk's index (after its PNGs): the INDEX_SCHEMA columns plus any extra ones.

        Extra columns (the frames' trajectory parameters) keep the types
        pyarrow infers for them. A retried chunk overwrites its file.
        """
        missing = [f.name for f in INDEX_SCHEMA if f.name not in columns]
        if missing:
            raise ValueError(f"chunk {chunk} index lacks columns {', '.join(missing)}")
        arrays = {f.name: pa.array(columns[f.name], type=f.type) for f in INDEX_SCHEMA}
        for name, values in columns.items():
            if name not in arrays:
                if isinstance(values, np.ndarray) and values.ndim > 1:
                    values = list(values)
                arrays[name] = pa.array(values)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(arrays), sink)
        self.write_bytes(f"{INDEX}/chunk-{chunk:06d}.parquet", sink.getvalue())

    def read_index(self, columns: list[str] | None = None) -> pa.Table:
        """Every chunk's index rows in one table (empty, with INDEX_SCHEMA, when there are none)."""
        files = [i.path for i in self._list(INDEX) if i.base_name.endswith(".parquet")]
        if not files:
            schema = INDEX_SCHEMA if columns is None else pa.schema([INDEX_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        with self._errors("cannot read the index"):
            return ds.dataset(sorted(files), format="parquet", filesystem=self.fs).to_table(columns=columns)

    def read_chunk_index(self, chunk: int) -> pa.Table | None:
        """One chunk's index rows, or None if the chunk has none yet."""
        try:
            data = self.read_bytes(f"{INDEX}/chunk-{chunk:06d}.parquet")
        except FileNotFoundError:
            return None
        return pq.read_table(pa.BufferReader(data))

    def done_frames(self, verify: bool = False) -> set[int]:
        """Frames with an index row whose PNG exists with the indexed size (and hash, with `verify`).

        `frames/` is listed once, so checking a finished run of thousands of
        frames costs one listing and one index read, not a request per frame.
        A frame indexed twice (a retried or re-planned chunk) is done if any
        of its rows matches the file.
        """
        index = self.read_index(["frame", "file", "bytes", "sha256"]).to_pydict()
        sizes = {f"{FRAMES}/{i.base_name}": i.size for i in self._list(FRAMES)}
        candidates: dict[int, set[str]] = {}
        for frame, file, size, digest in zip(index["frame"], index["file"], index["bytes"], index["sha256"]):
            if sizes.get(file) == size:
                candidates.setdefault(frame, set()).add(digest)
        if not verify:
            return set(candidates)

        def intact(item: tuple[int, set[str]]) -> bool:
            frame, digests = item
            try:
                return hashlib.sha256(self.read_frame(frame)).hexdigest() in digests
            except FileNotFoundError:
                return False

        with ThreadPoolExecutor(max_workers=8) as pool:
            checks = pool.map(intact, candidates.items())
            return {frame for frame, ok in zip(candidates, checks) if ok}

    def missing_frames(self, num_frames: int, verify: bool = False) -> list[int]:
        """Frames of 0..num_frames-1 that are not done, in order."""
        done = self.done_frames(verify=verify)
        return [f for f in range(num_frames) if f not in done]

    # ------------------------------------------------------------------ failures

    def write_failure(self, chunk: int, info: Mapping[str, Any]) -> None:
        """Record why a chunk gave up (error, attempts, ...)."""
        self._write_json(f"{FAILURES}/chunk-{chunk:06d}.json", info)

    def clear_failure(self, chunk: int) -> None:
        """Forget a chunk's failure (it has been rendered since)."""
        self.delete(f"{FAILURES}/chunk-{chunk:06d}.json")

    def read_failures(self) -> dict[int, dict[str, Any]]:
        """Recorded failures by chunk number."""
        failures = {}
        for info in self._list(FAILURES):
            stem = info.base_name.removesuffix(".json")
            if stem.startswith("chunk-") and stem[6:].isdigit():
                failures[int(stem[6:])] = self._read_json(f"{FAILURES}/{info.base_name}") or {}
        return dict(sorted(failures.items()))

    # ------------------------------------------------------------------ lock (see raywalk.lock)

    def read_lock(self) -> dict[str, Any] | None:
        """The run's lock record (host, pid, owner, heartbeat time), if any; see `raywalk.lock`."""
        from raywalk.lock import read_lock

        return read_lock(self)
