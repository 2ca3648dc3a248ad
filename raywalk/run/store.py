"""The run directory: frames, their Parquet index, manifest, outputs, failures and lock.

Storage is the source of truth of a run: resume, status and assembly read only
this. Every location goes through ``pyarrow.fs``, so a run lives on a local or
NFS path or in an object store (``s3://bucket/run?endpoint_override=host:port&scheme=http``,
``gs://...``) with the same code.

Layout under the run root::

    manifest.json                          the job, its fingerprint, the run id, versions, the model stack(s)
    keyframes.npz                          the prompts' encodings, by part (SHA-256 in the manifest)
    timing.npy                             the walk parameter of every frame, when measured (SHA-256 in the manifest)
    soundtrack/beat.flac                   the job's soundtrack, copied in whole (recorded like an output)
    pacing/000003.png                      the perceptual first pass's images, in order
    frames/000042.png                      one PNG per frame
    index/chunk-000007-<token>.parquet     the rows one chunk attempt rendered (never rewritten)
    damaged/chunk-000003-<token>.parquet   an unreadable index file, moved out once the run is complete
    frames.parquet                         a complete run's newest index row per frame (recorded like an output)
    failures/chunk-000007.json             why a chunk gave up
    outputs/walk.gif.json                  size, SHA-256 and run id of a published output
    walk.gif, walk.mp4, ...                final outputs, whole
    preview/walk.gif, ...                  partial outputs, marked PARTIAL inside
    smoothness.parquet                     distance from each frame to the next (recorded like an output)
    lock.json                              the driver rendering the run, with a heartbeat

Invariants (what resume may trust), enforced here:

1. A frame is done only if its PNG exists with the size (and, with ``verify``,
   the SHA-256) recorded by an index row that carries the manifest's run id.
   Rows of an earlier run (another job, ``--force``) never count; rows written
   before run ids read as ``LEGACY_RUN_ID``.
2. The index is append-only: each chunk attempt writes a file of its own with
   only the rows it rendered, and no writer reads, merges or rewrites another's
   file. Readers union every file and take a frame as done if any current row
   matches its PNG, so no later render, whatever its chunking, can drop a good
   frame's row.
3. A fresh start (``start_fresh``) writes the new manifest, with a new run id,
   before deleting anything: from that write on, the old run's rows are fenced
   off even if the deletions never finish.
4. An output under its final name is whole: it is uploaded under a temporary
   name and moved into place (pyarrow completes an interrupted S3 upload,
   apache/arrow#40502), and its size, SHA-256 and run id are recorded
   (``output_ok``). Partial outputs live under ``preview/`` only.
5. Every read, write, listing and delete goes through one retry helper that
   retries transient errors (throttling, 5xx, timeouts, dropped connections) a
   bounded number of times and fails at once, in one line, on anything else.
6. Damage is repaired, not fatal: an unreadable index file (or a ``chunk-*``
   file whose columns are not an index's) counts as its rows missing (named in
   ``damaged``) and is moved to ``damaged/`` once every frame is done again
   (``move_damaged``); any other file in ``index/`` is named once and ignored;
   garbage failure or lock records are ignored with a warning, and keyframes
   or a timing table that do not match the manifest are not used.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import logging
import os
import random
import re
import tempfile
import time
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import PurePath
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raywalk.core.frameinfo import FRAME_FORMAT
from raywalk.core.spec import Job
from raywalk.core.trajectory import Encodings
from raywalk.errors import BadInputError, RunLocationError, StoreError
from raywalk.run.manifest import LEGACY_RUN_ID, Manifest, ManifestError, new_manifest

log = logging.getLogger(__name__)

T = TypeVar("T")

MANIFEST = "manifest.json"
KEYFRAMES = "keyframes.npz"
TIMING = "timing.npy"
SOUNDTRACK = "soundtrack"
PACING = "pacing"
SMOOTHNESS = "smoothness.parquet"
ARRAY_PART = "_array"  # the name under which keyframes given as one array (not named parts) are stored
FRAMES = "frames"
INDEX = "index"
DAMAGED = "damaged"
FRAMES_TABLE = "frames.parquet"
FAILURES = "failures"
OUTPUTS = "outputs"
PREVIEW = "preview"

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
_STAMPED = ("run_id", "fingerprint", "written", "stack")  # filled in by write_chunk_index
_OPTIONAL = ("parameters",)  # null where `columns` lacks them
_REQUIRED = ("frame", "file", "sha256", "bytes")  # what every index file has held, since the first version

# The retry budget of every storage call: RETRY_ATTEMPTS tries, waiting RETRY_BACKOFF
# seconds after the first failure, doubling up to RETRY_MAX_DELAY, each wait with
# jitter (half to all of it). Environment variables let tests and users change them.
RETRY_ATTEMPTS = int(os.environ.get("RAYWALK_STORE_ATTEMPTS", "6"))
RETRY_BACKOFF = float(os.environ.get("RAYWALK_STORE_BACKOFF", "0.2"))
RETRY_MAX_DELAY = 5.0
OPEN_DEADLINE = 8.0  # seconds: checking a location retries only within this, so a bad --out fails fast

# Defaults for what a URI does not set. pyarrow's S3 URIs cannot carry timeouts,
# so raywalk takes `connect_timeout` and `request_timeout` (seconds) from the
# query itself; GCS URIs have `retry_limit_seconds` (pyarrow's default retries
# for 15 minutes).
S3_CONNECT_TIMEOUT = 5.0
S3_REQUEST_TIMEOUT = 30.0
GCS_RETRY_SECONDS = 3

# Errors worth another try: throttling, server errors, timeouts, dropped
# connections, as pyarrow words them for S3 (AWS SDK error names or
# "[code 503]"), GCS (google::cloud::Status codes) and local/NFS paths (errno).
_TRANSIENT = re.compile(
    r"SLOW_?DOWN|THROTTL|TOO_?MANY_?REQUESTS|SERVICE_?UNAVAILABLE|INTERNAL_?(FAILURE|ERROR)|REQUEST_?TIMEOUT"
    r"|NETWORK_CONNECTION|\[code 5\d\d\]|HTTP status 5\d\d|\b(UNAVAILABLE|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED)\b"
    r"|timed? ?out|connection (reset|refused|aborted)|broken pipe",
    re.IGNORECASE,
)
_PERMANENT = re.compile(r"NO_?SUCH_?BUCKET|ACCESS_?DENIED|FORBIDDEN|NOT_?FOUND|\[code 40[134]\]", re.IGNORECASE)
_TRANSIENT_ERRNOS = {
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.EAGAIN,
}

_COPY_BLOCK = 8 << 20
_WARNED: set[str] = set()  # warnings already given by this process (see RunStore._warn_once)
_READERS = 8  # index files read at once: the memory bound of an index scan


def _index_field(name: str) -> pa.Field:
    """An index column's field: INDEX_SCHEMA's, or untyped for a trajectory parameter."""
    return INDEX_SCHEMA.field(name) if name in INDEX_SCHEMA.names else pa.field(name, pa.null())


def is_index_file(base_name: str) -> bool:
    """Whether a file in index/ is one raywalk writes (`chunk-000007-<token>.parquet`; before tokens,
    `chunk-000007.parquet`): other files there (a user's notes) are not the index."""
    return base_name.startswith("chunk-") and base_name.endswith(".parquet")


def _index_columns(table: pa.Table, columns: list[str] | None) -> pa.Table:
    """`table` with `columns` only, or (None) INDEX_SCHEMA's first, then the others in their order."""
    if columns is None:
        columns = INDEX_SCHEMA.names + [c for c in table.column_names if c not in INDEX_SCHEMA.names]
    return table.select(columns)


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


def soundtrack_name(job: Job) -> str | None:
    """Where the run holds a copy of the job's soundtrack (soundtrack/beat.flac), or None without one."""
    if job.timing is None or job.timing.audio is None:
        return None
    return f"{SOUNDTRACK}/{PurePath(job.timing.audio).name}"


def preview_name(name: str) -> str:
    """Where the partial version of output `name` lives: preview/walk.gif."""
    return f"{PREVIEW}/{name}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _transient(exc: BaseException) -> bool:
    """Whether a storage error may pass if the call is tried again (see _TRANSIENT)."""
    if isinstance(exc, FileNotFoundError):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)) or getattr(exc, "errno", None) in _TRANSIENT_ERRNOS:
        return True
    text = str(exc)
    return bool(_TRANSIENT.search(text)) and not _PERMANENT.search(text)


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a URI, with raywalk's defaults for what the URI leaves unset."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    base, _, query = uri.partition("?")
    params = [p for p in query.split("&") if p]
    keys = {p.split("=", 1)[0] for p in params}
    if uri.startswith("gs://") and "retry_limit_seconds" not in keys:
        params.append(f"retry_limit_seconds={GCS_RETRY_SECONDS}")
    if not uri.startswith("s3://"):
        return pafs.FileSystem.from_uri(base + "?" + "&".join(params) if params else base)
    # Delayed open sends a small file (a frame, an index) as one PUT instead of
    # a three-request multipart upload; the URI's own choice wins.
    if "allow_delayed_open" not in keys:
        params.append("allow_delayed_open=true")
    timeouts = {"connect_timeout": S3_CONNECT_TIMEOUT, "request_timeout": S3_REQUEST_TIMEOUT}
    for p in [p for p in params if p.split("=", 1)[0] in timeouts]:
        params.remove(p)
        key, _, value = p.partition("=")
        try:
            timeouts[key] = float(value)
        except ValueError:
            raise ValueError(f"{key} must be a number of seconds, not {value!r}") from None
    fs, root = pafs.FileSystem.from_uri(base + "?" + "&".join(params))
    # from_uri cannot set timeouts or the retry strategy; pickling's own
    # constructor arguments can. The AWS SDK retries nothing: RunStore._retry
    # is the one retry loop, with one budget.
    rebuild, (options,) = fs.__reduce__()
    return rebuild({**options, **timeouts, "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1)}), root


def _file_blocks(path: str) -> Iterator[bytes]:
    """A local file in blocks of _COPY_BLOCK bytes (what an output upload sends)."""
    with open(path, "rb") as src:
        while block := src.read(_COPY_BLOCK):
            yield block


def _bounded_map(fn: Callable[[Any], T], items: Iterable[Any], workers: int = _READERS) -> Iterator[T]:
    """`map(fn, items)` on a thread pool, in order, with at most `workers` results pending."""
    pending: deque[Future[T]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="raywalk-store") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class RunStore:
    """One run directory, local or in an object store, addressed by a URI."""

    def __init__(self, uri: str | os.PathLike[str], create: bool = False):
        """Check that `uri` is a usable run location, writing nothing (with `create`, make its root too).

        The check is bounded (OPEN_DEADLINE): an unreachable store fails in
        seconds. The root need not exist; `create()` makes it.

        Raises:
            RunLocationError: the URI is empty, malformed, a file, names no bucket or cannot be reached.
        """
        self.uri = os.fspath(uri)
        if not self.uri.strip():
            raise RunLocationError(
                "the run location is empty: give a directory, s3://bucket/prefix or gs://bucket/prefix"
            )
        try:
            self.fs, self.root = _filesystem(self.uri)
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise RunLocationError(f"{self.uri}: not a usable run location: {_one_line(exc)}") from None
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.root = self.root.rstrip("/") or self.root
        if not self.root:
            raise RunLocationError(f"{self.uri}: not a usable run location: no bucket named")
        self.damaged: list[str] = []  # index files the last index read could not decode
        self._made_dirs: set[str] = set()
        self._check()
        if create:
            self.create()

    def __repr__(self) -> str:
        return f"RunStore({self.uri!r})"

    def _check(self) -> None:
        """Refuse a location that is a file, sits under a file, or lies in a bucket that does not exist."""

        def info(path: str) -> pafs.FileInfo:
            return self._retry(
                "cannot reach the run location",
                lambda: self.fs.get_file_info(path),
                deadline=OPEN_DEADLINE,
                error=RunLocationError,
            )

        root = info(self.root)
        if root.type == pafs.FileType.File:
            raise RunLocationError(f"{self.uri}: is a file, not a run directory")
        if root.type != pafs.FileType.NotFound:
            return
        if not self.local:
            bucket = self.root.split("/", 1)[0]
            if info(bucket).type == pafs.FileType.NotFound:
                raise RunLocationError(f"{self.uri}: bucket {bucket!r} does not exist")
            return
        parent = os.path.dirname(self.root)
        while parent != os.path.dirname(parent) and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise RunLocationError(f"{self.uri}: {parent} is a file, not a directory")

    def create(self) -> None:
        """Make the run's root (nothing to do if it exists).

        Raises:
            StoreError: the root cannot be made (permissions, a read-only path, storage failing).
        """
        self._retry("cannot create the run location", lambda: self.fs.create_dir(self.root, recursive=True))

    def root_exists(self) -> bool:
        """Whether the run's root exists (as a directory, or a prefix holding objects)."""
        info = self._retry("cannot reach the run location", lambda: self.fs.get_file_info(self.root))
        return info.type == pafs.FileType.Directory

    # ------------------------------------------------------------------ paths and raw I/O

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def url(self, name: str = "") -> str:
        """Where `name` lives, for messages: a local path or scheme://bucket/key (no options)."""
        path = self._path(name) if name else self.root
        return path if self.local else f"{self.uri.split('://', 1)[0]}://{path}"

    def _retry(
        self,
        what: str,
        call: Callable[[], T],
        *,
        missing_ok: bool = False,
        deadline: float | None = None,
        error: type[StoreError] = StoreError,
    ) -> T:
        """`call()`, tried again on transient storage errors within the retry budget.

        Raises:
            FileNotFoundError: with `missing_ok`, what `call` looked for does not exist.
            StoreError: (or `error`) anything else, at once if it is not transient, else once the budget
                or `deadline` (seconds from now) is spent; one line naming the run and `what`.
        """
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            tried = time.monotonic()
            try:
                return call()
            except (OSError, pa.ArrowException) as exc:
                if missing_ok and isinstance(exc, FileNotFoundError):
                    raise
                delay = min(RETRY_MAX_DELAY, RETRY_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                now = time.monotonic()
                over = deadline is not None and now - started + delay + (now - tried) > deadline
                if not _transient(exc) or attempt == RETRY_ATTEMPTS or over:
                    tries = f" (tried {attempt} times)" if attempt > 1 else ""
                    raise error(f"{self.uri}: {what}: {_one_line(exc)}{tries}") from None
                log.info("%s: %s: %s; trying again in %.1f s", self.uri, what, _one_line(exc), delay)
                time.sleep(delay)

    def _warn_once(self, key: str, message: str) -> None:
        """Log `message` as a warning unless this process already gave it about `key` of this run: the
        driver, its in-process assembly and the report each open the run, and a CLI command says it once."""
        key = f"{self.url(key)}: {message}"
        if key not in _WARNED:
            _WARNED.add(key)
            log.warning("%s", message)

    def _parent_dir(self, path: str) -> str:
        parent = path.rsplit("/", 1)[0]
        if parent not in self._made_dirs:
            self.fs.create_dir(parent, recursive=True)
            self._made_dirs.add(parent)
        return parent

    def _temp_path(self, path: str) -> str:
        # Dot-prefixed, so listings and index reads skip half-written files;
        # the original name stays at the end so tools that go by extension work.
        parent, base = path.rsplit("/", 1)
        return f"{parent}/.tmp-{uuid.uuid4().hex[:12]}-{base}"

    def write_bytes(self, name: str, data: bytes | bytearray | memoryview | pa.Buffer) -> None:
        """Write `name` all-or-nothing: temp file + move locally, one PUT on object stores.

        For the run's own small files (frames, index, records). Outputs go
        through `write_output` / `local_output`, which never publish a partial object.

        Raises:
            StoreError: the write kept failing.
        """
        path = self._path(name)

        def put() -> None:
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

        self._retry(f"cannot write {name}", put)

    def read_bytes(self, name: str) -> bytes:
        """The content of `name`.

        Raises:
            FileNotFoundError: `name` does not exist.
            StoreError: the read kept failing.
        """

        def get() -> bytes:
            with self.fs.open_input_stream(self._path(name)) as f:
                return f.read()

        return self._retry(f"cannot read {name}", get, missing_ok=True)

    def exists(self, name: str) -> bool:
        """Whether `name` exists as a file in the run."""
        return self._size(name) is not None

    def _size(self, name: str) -> int | None:
        info = self._retry(f"cannot look up {name}", lambda: self.fs.get_file_info(self._path(name)))
        return info.size if info.type == pafs.FileType.File else None

    def delete(self, name: str) -> None:
        """Delete `name` if it exists."""

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self._path(name))

        self._retry(f"cannot delete {name}", remove)

    def _delete_dir(self, subdir: str) -> None:
        self._retry(
            f"cannot delete {subdir}/", lambda: self.fs.delete_dir_contents(self._path(subdir), missing_dir_ok=True)
        )

    def _list(self, subdir: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self._path(subdir), allow_not_found=True)
        infos = self._retry(f"cannot list {subdir}/", lambda: self.fs.get_file_info(selector))
        return [i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")]

    def _write_json(self, name: str, data: Mapping[str, Any]) -> None:
        self.write_bytes(name, json.dumps(data, indent=2, default=str).encode())

    def _read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON object record, or None if it is missing or damaged (damage is logged as a warning)."""
        try:
            raw = self.read_bytes(name)
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            data = exc
        if not isinstance(data, dict):
            what = _one_line(data) if isinstance(data, Exception) else f"a JSON {type(data).__name__}"
            self._warn_once(name, f"{self.url(name)} is damaged ({what}); ignoring it")
            return None
        return data

    # ------------------------------------------------------------------ outputs

    def _publish(
        self,
        name: str,
        blocks: Callable[[], Iterable[bytes | bytearray | memoryview]],
        run_id: str | None,
        expect_sha256: str | None = None,
    ) -> None:
        """Put the bytes `blocks()` yields under `name` whole, then record them for `run_id` (if given).

        Object stores get the data under a temporary key that is moved into
        place only once the upload succeeded: pyarrow completes a multipart
        upload on close even while an exception propagates (a Ctrl-C mid-upload
        would publish a truncated object under the final name,
        https://github.com/apache/arrow/issues/40502). The temporary object is
        deleted on any failure. An output's old record goes first, so a
        half-replaced output never passes `output_ok`. With `expect_sha256`,
        bytes of another hash are never moved into place.

        Raises:
            BadInputError: the bytes do not have `expect_sha256`.
            StoreError: the upload kept failing.
        """
        path, record = self._path(name), f"{OUTPUTS}/{name}.json"
        if run_id is not None:
            self.delete(record)

        def upload() -> tuple[int, str]:
            digest, size = hashlib.sha256(), 0
            tmp = self._temp_path(path)
            try:
                if self.local:
                    self._parent_dir(path)
                with self.fs.open_output_stream(tmp) as out:
                    for block in blocks():
                        out.write(block)
                        digest.update(block)
                        size += len(block)
                if expect_sha256 is not None and digest.hexdigest() != expect_sha256:
                    raise BadInputError(
                        f"{name}: its SHA-256 is {digest.hexdigest()[:12]}..., not the {expect_sha256[:12]}... "
                        "the job recorded (the file changed after the job was loaded)"
                    )
                self.fs.move(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(tmp)
                raise
            return size, digest.hexdigest()

        size, sha256 = self._retry(f"cannot write {name}", upload)
        if run_id is not None:
            self._record_output(name, size, sha256, run_id)

    def write_output(self, name: str, data: bytes | bytearray | memoryview, run_id: str | None = None) -> None:
        """Publish output `name` whole (see `_publish`), recorded for `run_id` unless it is None (previews).

        Raises:
            StoreError: the write kept failing; nothing is left under `name`'s temporary name.
        """
        self._publish(name, lambda: [data], run_id)

    @contextlib.contextmanager
    def local_output(self, name: str, run_id: str | None = None) -> Iterator[str]:
        """A local file path to write output `name` into; it is published whole only if the block succeeds.

        For outputs written by other programs or libraries (ffmpeg, encoders
        that want a real file). Local runs get a temp name in the run directory
        moved into place; object-store runs get a local temp file uploaded in
        blocks under a temporary key, then moved into place (see `_publish`),
        so an output of any size never has to fit in memory. With `run_id`, the
        output is recorded for `output_ok`.

        Raises:
            StoreError: the upload kept failing.
        """
        if self.local:
            path = self._path(name)
            if run_id is not None:
                self.delete(f"{OUTPUTS}/{name}.json")
            self._retry(f"cannot write {name}", lambda: self._parent_dir(path))
            tmp = self._temp_path(path)
            try:
                yield tmp
                digest, size = hashlib.sha256(), 0
                for block in _file_blocks(tmp) if run_id is not None else ():
                    digest.update(block)
                    size += len(block)
                self._retry(f"cannot write {name}", lambda: self.fs.move(tmp, path))
            finally:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
            if run_id is not None:
                self._record_output(name, size, digest.hexdigest(), run_id)
            return
        with tempfile.TemporaryDirectory(prefix="raywalk-") as tmpdir:
            tmp = os.path.join(tmpdir, os.path.basename(name))
            yield tmp
            self._publish(name, lambda: _file_blocks(tmp), run_id)

    def copy_in(self, name: str, path: str | os.PathLike[str], sha256: str, run_id: str) -> None:
        """Copy the local file `path` into the run as `name`, streamed and whole, only if its SHA-256 is
        `sha256`; recorded for `run_id` like an output (`holds`).

        Raises:
            BadInputError: the file cannot be read, or its bytes are not `sha256`'s (nothing is left under `name`).
            StoreError: the upload kept failing.
        """
        if not os.path.isfile(path):
            raise BadInputError(f"{os.fspath(path)}: not found, and the run holds no copy of it")
        self._publish(name, lambda: _file_blocks(os.fspath(path)), run_id, expect_sha256=sha256)

    def holds(self, name: str, sha256: str) -> bool:
        """Whether the run holds `name` whole with SHA-256 `sha256`, as `copy_in` recorded it."""
        record = self.output_record(name)
        return record is not None and record.get("sha256") == sha256 and self._size(name) == record.get("bytes")

    @contextlib.contextmanager
    def local_file(self, name: str) -> Iterator[str]:
        """A local path holding the bytes of `name` (for libraries that want a file): the file itself on a
        local run, else a temporary copy downloaded in blocks and deleted afterwards.

        Raises:
            FileNotFoundError: `name` does not exist.
            StoreError: the download kept failing.
        """
        if self.local:
            if self._size(name) is None:
                raise FileNotFoundError(self.url(name))
            yield self._path(name)
            return
        with tempfile.TemporaryDirectory(prefix="raywalk-") as tmpdir:
            tmp = os.path.join(tmpdir, os.path.basename(name))

            def download() -> None:
                with self.fs.open_input_stream(self._path(name)) as src, open(tmp, "wb") as out:
                    while block := src.read(_COPY_BLOCK):
                        out.write(block)

            self._retry(f"cannot read {name}", download, missing_ok=True)
            yield tmp

    def _record_output(self, name: str, size: int, sha256: str, run_id: str) -> None:
        self._write_json(
            f"{OUTPUTS}/{name}.json",
            {"name": name, "bytes": size, "sha256": sha256, "run_id": run_id, "written": time.time()},
        )

    def output_record(self, name: str) -> dict[str, Any] | None:
        """What was recorded when output `name` was published (bytes, sha256, run_id, written), if anything."""
        return self._read_json(f"{OUTPUTS}/{name}.json")

    def output_ok(self, name: str, run_id: str) -> bool:
        """Whether output `name` is there, whole, from run `run_id`: its record names that run and its
        size matches the file (so assembly can be skipped)."""
        record = self.output_record(name)
        if record is None or record.get("run_id") != run_id:
            return False
        return self._size(name) == record.get("bytes")

    # ------------------------------------------------------------------ manifest, keyframes, fresh starts

    def write_manifest(self, manifest: Manifest) -> None:
        """Record the run's manifest (see `raywalk.run.manifest`)."""
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
            raise ManifestError(
                f"{self.url(MANIFEST)} is damaged (not JSON: {_one_line(exc)}); render the job "
                "file into this run again to repair it (`raywalk render JOB --out RUN`)"
            ) from None
        return Manifest.from_json(data, source=self.url(MANIFEST))

    def require_manifest(self) -> Manifest:
        """The run's manifest.

        Raises:
            RunLocationError: the location holds no run (ManifestError: a damaged manifest).
        """
        manifest = self.read_manifest()
        if manifest is None:
            if not self.root_exists():
                raise RunLocationError(f"{self.uri}: no run there")
            raise RunLocationError(f"{self.uri}: holds no raywalk run (no manifest.json)")
        return manifest

    def read_job(self) -> Job:
        """The job this run renders, from its manifest; RunLocationError if the location holds no run."""
        return self.require_manifest().job

    def start_fresh(self, manifest: Manifest) -> None:
        """Begin a new run (`manifest`, with a run id of its own) over whatever the location holds.

        The manifest is written first, which fences the old run off (its rows
        no longer count); then the old run's index (damaged files too), failures,
        keyframes, output records, previews and final outputs (frames.parquet
        too) go, and frames past the new
        job's frame count. Frames below it are left to be overwritten. The
        timing table, soundtrack copy and first-pass images of the old run go
        too: the new one measures its own.

        Raises:
            StoreError: storage kept failing (the run is fenced off once the manifest is written).
        """
        try:
            old = self.read_manifest()
        except ManifestError:
            old = None
        self.write_manifest(manifest)
        outputs = {r.base_name.removesuffix(".json") for r in self._list(OUTPUTS)}
        for job in (old.job if old else None, manifest.job):
            if job is not None:
                outputs.update(job.output_files().values())
        for subdir in (INDEX, DAMAGED, FAILURES, OUTPUTS, PREVIEW, SOUNDTRACK, PACING):
            self._delete_dir(subdir)
        for name in sorted(outputs) + [KEYFRAMES, TIMING, SMOOTHNESS, FRAMES_TABLE]:
            self.delete(name)
        stray = [
            i.base_name
            for i in self._list(FRAMES)
            if not i.base_name[:-4].isdigit() or int(i.base_name[:-4]) >= manifest.num_frames
        ]
        list(_bounded_map(lambda base: self.delete(f"{FRAMES}/{base}"), stray))

    def adopt(self, job: Job) -> Manifest:
        """Repair a run of `job` whose manifest is damaged: write a fresh manifest that keeps the run id of
        the newest index rows of `job` (else a new one), so their frames stay done, and the frame format
        those rows show (format 1 if none of them has a `parameters` text), so resumes match their bytes.

        The keyframes and timing table are deleted: nothing says which job they
        were made for, and re-encoding the prompts or measuring the table again
        costs far less than one frame of doubt.

        Raises:
            StoreError: storage kept failing.
        """
        fingerprint, newest, run_id = job.fingerprint(), -1.0, None
        texts: dict[str, bool] = {}  # run id -> whether any of its rows has a frame text (format 2)
        for table in self._index_tables(["fingerprint", "written", "run_id", "parameters"]):
            rows = table.filter(pc.fill_null(pc.equal(table["fingerprint"], fingerprint), False))
            if rows.num_rows:
                written = rows["written"].fill_null(0.0).to_numpy()
                if written.max() > newest:
                    newest, run_id = float(written.max()), rows["run_id"][int(written.argmax())].as_py()
                for rid, text in zip(rows["run_id"].to_pylist(), rows["parameters"].to_pylist()):
                    texts[rid] = texts.get(rid, False) or text is not None
        manifest = new_manifest(job)
        if run_id is not None:  # its frames keep their format: rows without text were written in format 1
            manifest = manifest.replace(run_id=run_id, frame_format=FRAME_FORMAT if texts[run_id] else 1)
        self.delete(KEYFRAMES)
        self.delete(TIMING)
        self.write_manifest(manifest)
        return manifest

    def write_keyframes(self, keyframes: Encodings) -> str:
        """Store the prompts' encodings (named parts, or one array), as float32, computed once and reused by
        every chunk and resume.

        Returns:
            The SHA-256 of the stored bytes, for the manifest's `keyframes_sha256`.
        """
        parts = dict(keyframes) if isinstance(keyframes, Mapping) else {ARRAY_PART: keyframes}
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **{name: np.asarray(part, np.float32) for name, part in parts.items()})
        self.write_bytes(KEYFRAMES, buf.getbuffer())
        return hashlib.sha256(buf.getbuffer()).hexdigest()

    def read_keyframes(self, expected_sha256: str | None = None) -> Encodings | None:
        """The stored keyframe encodings, or None if they are missing, damaged or not the expected ones.

        With `expected_sha256` (the manifest's), bytes of any other hash are
        refused. Every refusal is named in a warning; a missing file is only
        worth one when the manifest says it should be there.
        """
        where = self.url(KEYFRAMES)
        try:
            raw = self.read_bytes(KEYFRAMES)
        except FileNotFoundError:
            if expected_sha256 is not None:
                log.warning("%s is missing (the manifest records keyframes %s)", where, expected_sha256[:12])
            return None
        if expected_sha256 is not None and hashlib.sha256(raw).hexdigest() != expected_sha256:
            log.warning(
                "%s does not match the manifest (SHA-256 %s expected); not using it", where, expected_sha256[:12]
            )
            return None
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as stored:
                parts = {name: stored[name] for name in stored.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("%s is damaged (%s); not using it", where, _one_line(exc))
            return None
        return parts[ARRAY_PART] if list(parts) == [ARRAY_PART] else parts

    def write_timing(self, table: np.ndarray) -> str:
        """Store the walk table (one float64 u per frame, `raywalk.core.timing.job_table`) for every chunk and resume.

        Returns:
            The SHA-256 of the stored bytes, for the manifest's `timing_sha256`.
        """
        buf = io.BytesIO()
        np.save(buf, np.asarray(table, dtype=np.float64), allow_pickle=False)
        self.write_bytes(TIMING, buf.getbuffer())
        return hashlib.sha256(buf.getbuffer()).hexdigest()

    def read_timing(self, expected_sha256: str | None) -> np.ndarray | None:
        """The stored walk table if its SHA-256 is `expected_sha256` (the manifest's), else None (missing,
        damaged, another run's, or no hash recorded yet); a refusal of a recorded table is named in a warning."""
        if expected_sha256 is None:
            return None
        try:
            raw = self.read_bytes(TIMING)
        except FileNotFoundError:
            log.warning("%s is missing (the manifest records table %s)", self.url(TIMING), expected_sha256[:12])
            return None
        if hashlib.sha256(raw).hexdigest() != expected_sha256:
            log.warning("%s does not match the manifest; not using it", self.url(TIMING))
            return None
        try:
            return np.asarray(np.load(io.BytesIO(raw), allow_pickle=False), dtype=np.float64)
        except (ValueError, OSError, EOFError) as exc:
            log.warning("%s is damaged (%s); not using it", self.url(TIMING), _one_line(exc))
            return None

    def write_pacing_frame(self, sample: int, png: bytes) -> None:
        """Write first-pass image `sample` (pacing/000003.png); the same for every attempt, so rewriting is harmless."""
        self.write_bytes(f"{PACING}/{frame_name(sample)}", png)

    def read_pacing_frame(self, sample: int) -> bytes:
        """First-pass image `sample`'s PNG; FileNotFoundError if it was never written."""
        return self.read_bytes(f"{PACING}/{frame_name(sample)}")

    def pacing_frames(self) -> set[int]:
        """The first-pass images the run holds (written whole, so present means done)."""
        stems = (i.base_name.removesuffix(".png") for i in self._list(PACING) if i.base_name.endswith(".png"))
        return {int(stem) for stem in stems if stem.isdigit()}

    def read_smoothness(self, run_id: str) -> np.ndarray | None:
        """Distances from each frame to the next recorded for run `run_id` (smoothness.parquet), or None."""
        if not self.output_ok(SMOOTHNESS, run_id):
            return None
        try:
            table = pq.read_table(pa.BufferReader(self.read_bytes(SMOOTHNESS)), columns=["distance_to_next"])
        except (FileNotFoundError, OSError, pa.ArrowException) as exc:
            self._warn_once(SMOOTHNESS, f"{self.url(SMOOTHNESS)} is damaged ({_one_line(exc)}); ignoring it")
            return None
        return np.asarray(table["distance_to_next"].to_numpy(), dtype=np.float64)

    # ------------------------------------------------------------------ frames and index

    def write_frame(self, frame: int, png: bytes) -> dict[str, Any]:
        """Write a frame's PNG; returns its index fields {file, sha256, bytes}."""
        file = f"{FRAMES}/{frame_name(frame)}"
        self.write_bytes(file, png)
        return {"file": file, "sha256": hashlib.sha256(png).hexdigest(), "bytes": len(png)}

    def read_frame(self, frame: int) -> bytes:
        """A frame's PNG bytes; FileNotFoundError if it was never written."""
        return self.read_bytes(f"{FRAMES}/{frame_name(frame)}")

    def write_chunk_index(
        self,
        chunk: int,
        columns: Mapping[str, Sequence[Any]],
        *,
        run_id: str | None = None,
        fingerprint: str | None = None,
        stack: str | None = None,
    ) -> str:
        """Add the index rows one attempt at chunk `chunk` rendered (after their PNGs); returns the file's name.

        `columns` holds the INDEX_SCHEMA columns (`parameters` may be left
        out: null), plus any extra ones (the frames' trajectory parameters,
        which keep the types pyarrow infers).
        Every row is stamped with `run_id` and `fingerprint` (default: the
        manifest's), the id of the stack that rendered them (`stack`, null if
        not given) and, unless `columns` has them, the time of writing. Each
        call writes a new file (`index/chunk-000007-<token>.parquet`) and
        touches no other.

        Raises:
            ValueError: a required column is missing.
            RunLocationError: `run_id` or `fingerprint` is None and the location holds no run.
            StoreError: the write kept failing.
        """
        missing = [f.name for f in INDEX_SCHEMA if f.name not in columns and f.name not in _STAMPED + _OPTIONAL]
        if missing:
            raise ValueError(f"chunk {chunk} index lacks columns {', '.join(missing)}")
        if run_id is None or fingerprint is None:
            manifest = self.require_manifest()
            run_id, fingerprint = run_id or manifest.run_id, fingerprint or manifest.fingerprint
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
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(arrays), sink)
        name = f"{INDEX}/chunk-{chunk:06d}-{uuid.uuid4().hex[:8]}.parquet"
        self.write_bytes(name, sink.getvalue())
        return name

    def _index_tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Each index file's rows (only `columns`, if given), a few files at a time.

        A file that cannot be decoded (truncated, garbage), or a `chunk-*` file
        without an index's columns (`_REQUIRED`, INDEX_SCHEMA's types), counts
        as no rows: it is named in `self.damaged` and in one warning. Any other
        file in index/ is not the index: named in one warning and skipped. A
        missing `run_id` (rows from before run ids) reads as LEGACY_RUN_ID.
        """
        listed = sorted(i.base_name for i in self._list(INDEX))
        for base in listed:
            if not is_index_file(base):
                where = self.url(f"{INDEX}/{base}")
                self._warn_once(
                    f"{INDEX}/{base}", f"{where} is not a raywalk index file (those are chunk-*.parquet); ignoring it"
                )
        names = [f"{INDEX}/{base}" for base in listed if is_index_file(base)]
        self.damaged = []

        def load(name: str) -> pa.Table | None:
            try:
                raw = self.read_bytes(name)
            except FileNotFoundError:  # deleted since the listing (a fresh start)
                return None
            try:
                parquet = pq.ParquetFile(pa.BufferReader(raw))
                names = parquet.schema_arrow.names
                lacking = [c for c in _REQUIRED if c not in names]
                if lacking:
                    raise ValueError(f"not an index file: no column {', '.join(lacking)}")
                table = parquet.read(columns=None if columns is None else [c for c in columns if c in names])
                for i, name_ in enumerate(table.column_names):
                    if name_ in INDEX_SCHEMA.names and table.schema.field(name_).type != _index_field(name_).type:
                        table = table.set_column(
                            i, _index_field(name_), pc.cast(table[name_], _index_field(name_).type)
                        )
            except (ValueError, OSError, pa.ArrowException) as exc:
                self.damaged.append(name)
                self._warn_once(name, f"{self.url(name)} is damaged ({_one_line(exc)}); its frames count as missing")
                return None
            for field in INDEX_SCHEMA if columns is None else map(_index_field, columns):
                if field.name not in table.column_names:
                    table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            if "run_id" in table.column_names:
                i = table.column_names.index("run_id")
                table = table.set_column(i, INDEX_SCHEMA.field("run_id"), table["run_id"].fill_null(LEGACY_RUN_ID))
            return table if columns is None else table.select(columns)

        for table in _bounded_map(load, names):
            if table is not None:
                yield table

    def read_index(self, columns: list[str] | None = None, run_id: str | None = None) -> pa.Table:
        """Every index row in one table (of `run_id` only, if given), duplicates included; empty, with
        INDEX_SCHEMA, when there are none. Damaged files are skipped and named in `damaged`.

        Raises:
            StoreError: storage kept failing.
        """
        wanted = columns if run_id is None or columns is None or "run_id" in columns else [*columns, "run_id"]
        tables = list(self._index_tables(wanted))
        if run_id is not None:
            tables = [t.filter(pc.equal(t["run_id"], run_id)) for t in tables]
        schema = INDEX_SCHEMA if columns is None else pa.schema(map(_index_field, columns))
        if not any(t.num_rows for t in tables):
            return schema.empty_table()
        return _index_columns(pa.concat_tables([t for t in tables if t.num_rows], promote_options="default"), columns)

    def done_frames(self, num_frames: int, run_id: str | None = None, verify: bool = False) -> np.ndarray:
        """A boolean array over frames 0..num_frames-1: True where the frame is done for run `run_id`
        (default: the manifest's), that is, has an index row of that run whose PNG exists with the size
        the row records (and hash, with `verify`): invariant 1.

        `frames/` is listed once and the index is read a few files at a time,
        only the columns needed, into numpy arrays of num_frames entries: a
        run of millions of frames is checked in the memory of a few chunks.
        A frame indexed more than once (retried or re-planned chunks, later
        renders) is done if any of its rows of the run matches the file.

        Raises:
            RunLocationError: `run_id` is None and the location holds no run.
            StoreError: storage kept failing.
        """
        return self._scan(num_frames, run_id, verify, None)

    def frame_rows(self, num_frames: int, run_id: str | None = None) -> tuple[np.ndarray, pa.Table]:
        """`done_frames(num_frames, run_id)` and, from the same read of the index, the newest row of run
        `run_id` behind each done frame (every column, sorted by frame): what frames.parquet holds.

        Unlike `done_frames`, memory grows with the run's rows (all columns of one row per frame rendered).

        Raises:
            RunLocationError: `run_id` is None and the location holds no run.
            StoreError: storage kept failing.
        """
        kept: list[pa.Table] = []
        done = self._scan(num_frames, run_id, False, kept)
        kept = [t for t in kept if t.num_rows]
        if not kept:
            return done, INDEX_SCHEMA.empty_table()
        rows = pa.concat_tables(kept, promote_options="default")
        rows = rows.sort_by([("frame", "ascending"), ("written", "descending")])  # a null `written` sorts last
        frames = rows["frame"].to_numpy()
        newest = np.concatenate([[True], frames[1:] != frames[:-1]])
        return done, _index_columns(rows.filter(pa.array(newest)), None)

    def _scan(self, num_frames: int, run_id: str | None, verify: bool, kept: list[pa.Table] | None) -> np.ndarray:
        """`done_frames`, adding to `kept` (if given) the rows, every column, that make their frames done."""
        run_id = self.require_manifest().run_id if run_id is None else run_id
        sizes = np.full(num_frames, -1, dtype=np.int64)
        for info in self._list(FRAMES):
            stem = info.base_name.removesuffix(".png")
            if stem.isdigit() and int(stem) < num_frames and info.base_name == frame_name(int(stem)):
                sizes[int(stem)] = info.size
        done = np.zeros(num_frames, dtype=bool)
        digests: dict[int, set[str]] = {}  # with verify only: the recorded hashes of candidate frames
        columns = None if kept is not None else ["frame", "file", "bytes", "run_id"] + (["sha256"] if verify else [])
        for table in self._index_tables(columns):
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
                    return hashlib.sha256(self.read_frame(item[0])).hexdigest() in item[1]
                except FileNotFoundError:
                    return False

            for (f, _), ok in zip(digests.items(), _bounded_map(intact, digests.items())):
                done[f] = ok
        return done

    def write_frames_table(self, rows: pa.Table, run_id: str) -> str:
        """Publish frames.parquet, recorded for run `run_id`: `rows` (`frame_rows`' table of a complete run),
        one Parquet file for readers that want one row per frame; returns where.

        Raises:
            StoreError: the write kept failing (nothing is left under the name).
        """
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink)
        self.write_output(FRAMES_TABLE, sink.getvalue(), run_id)
        return self.url(FRAMES_TABLE)

    def move_damaged(self) -> list[str]:
        """Move the index files the last index read found damaged (`damaged`) to damaged/ (same names), out
        of the way of readers of index/; for a complete run only, whose frames the other rows hold. Returns
        the new names.

        Raises:
            StoreError: a move kept failing (the files not yet moved stay in index/).
        """

        def move(name: str, target: str) -> None:
            if self.local:
                self._parent_dir(self._path(target))
            self.fs.move(self._path(name), self._path(target))

        moved = []
        for name in self.damaged:
            target = f"{DAMAGED}/{name.rsplit('/', 1)[-1]}"
            self._retry(f"cannot move {name} to {DAMAGED}/", functools.partial(move, name, target))
            moved.append(target)
        self.damaged = []
        return moved

    def moved_damaged(self) -> list[str]:
        """The index files `move_damaged` set aside in damaged/."""
        return sorted(f"{DAMAGED}/{i.base_name}" for i in self._list(DAMAGED))

    def missing_frames(self, num_frames: int, run_id: str | None = None, verify: bool = False) -> list[int]:
        """Frames of 0..num_frames-1 that are not done for run `run_id` (default: the manifest's), in order."""
        return np.flatnonzero(~self.done_frames(num_frames, run_id, verify)).tolist()

    # ------------------------------------------------------------------ failures

    def write_failure(self, chunk: int, info: Mapping[str, Any]) -> None:
        """Record why a chunk gave up (error, attempts, ...)."""
        self._write_json(f"{FAILURES}/chunk-{chunk:06d}.json", info)

    def clear_failure(self, chunk: int) -> None:
        """Forget a chunk's failure (it has been rendered since)."""
        self.delete(f"{FAILURES}/chunk-{chunk:06d}.json")

    def read_failures(self) -> dict[int, dict[str, Any]]:
        """Recorded failures by chunk number; a damaged record is left out with a warning naming it."""
        failures = {}
        for info in self._list(FAILURES):
            stem = info.base_name.removesuffix(".json")
            if stem.startswith("chunk-") and stem[6:].isdigit():
                record = self._read_json(f"{FAILURES}/{info.base_name}")
                if record is not None:
                    failures[int(stem[6:])] = record
        return dict(sorted(failures.items()))

    # ------------------------------------------------------------------ lock (see raywalk.run.lock)

    def read_lock(self) -> dict[str, Any] | None:
        """The run's lock record (host, pid, owner, heartbeat time), if any; see `raywalk.run.lock`."""
        from raywalk.run.lock import read_lock

        return read_lock(self)
