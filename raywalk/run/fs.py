"""The run's raw I/O: a URI made a pyarrow filesystem, and every call on it through one retry helper.

Every location goes through ``pyarrow.fs``, so a run lives on a local or NFS
path or in an object store (``s3://bucket/run?endpoint_override=host:port&scheme=http``,
``gs://...``) with the same code. This module enforces two of the run
directory's invariants (see `raywalk.run`):

4. Whole files only: `RunFS.publish` uploads under a temporary name and moves
   into place (pyarrow completes an interrupted S3 upload, apache/arrow#40502).
5. Every read, write, listing and delete goes through `raywalk.run.retry`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa
import pyarrow.fs as pafs

from raywalk.errors import RunLocationError, describe
from raywalk.run.retry import OPEN_DEADLINE, retry

log = logging.getLogger(__name__)

T = TypeVar("T")
Bytes = bytes | bytearray | memoryview

# Defaults for what a URI does not set. pyarrow's S3 URIs cannot carry timeouts,
# so raywalk takes `connect_timeout` and `request_timeout` (seconds) from the
# query itself; GCS URIs have `retry_limit_seconds` (pyarrow's default retries
# for 15 minutes).
S3_CONNECT_TIMEOUT = 5.0
S3_REQUEST_TIMEOUT = 30.0
GCS_RETRY_SECONDS = 3

_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP)  # filesystems without hard links (some FUSE mounts)


_WARNED: set[str] = set()  # warnings already given by this process (see RunFS.warn_once)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a URI, with raywalk's defaults for what the URI leaves unset.

    Raises:
        ValueError: a timeout option is not a number (pyarrow raises ValueError, OSError or ArrowException
            for URIs it cannot parse).
    """
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
    # constructor arguments can. The AWS SDK retries nothing: `retry` is the
    # one retry loop, with one budget.
    rebuild, (options,) = fs.__reduce__()
    return rebuild({**options, **timeouts, "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1)}), root


class RunFS:
    """The files of one run root, local or in an object store: every call retried (`retry`), names relative
    to the root, writes whole."""

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        """Check that `uri` is a usable run location, writing nothing; bounded by OPEN_DEADLINE.

        Raises:
            RunLocationError: the URI is empty, malformed, a file, names no bucket or cannot be reached.
        """
        self.uri = os.fspath(uri)
        if not self.uri.strip():
            raise RunLocationError(
                "the run location is empty: give a directory, s3://bucket/prefix or gs://bucket/prefix"
            )
        try:
            self.fs, root = filesystem(self.uri)
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise RunLocationError(f"{self.uri}: not a usable run location: {describe(exc)}") from None
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.root = root.rstrip("/") or root
        if not self.root:
            raise RunLocationError(f"{self.uri}: not a usable run location: no bucket named")
        self._made_dirs: set[str] = set()
        self._check()

    def __repr__(self) -> str:
        return f"RunFS({self.uri!r})"

    def _check(self) -> None:
        """Refuse a location that is a file, sits under a file, or lies in a bucket that does not exist."""

        def info(path: str) -> pafs.FileInfo:
            def lookup() -> pafs.FileInfo:
                return self.fs.get_file_info(path)

            what = "cannot reach the run location"
            return retry(self.uri, what, lookup, deadline=OPEN_DEADLINE, error=RunLocationError)

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

    def retry(self, what: str, call: Callable[[], T], *, missing_ok: bool = False) -> T:
        """`retry` for a call on this run. Raises: see `retry`."""
        return retry(self.uri, what, call, missing_ok=missing_ok)

    def create_root(self) -> None:
        """Make the run's root (nothing to do if it exists). Raises: StoreError: it cannot be made."""
        self.retry("cannot create the run location", lambda: self.fs.create_dir(self.root, recursive=True))

    def root_exists(self) -> bool:
        """Whether the run's root exists (as a directory, or a prefix holding objects)."""
        info = self.retry("cannot reach the run location", lambda: self.fs.get_file_info(self.root))
        return info.type == pafs.FileType.Directory

    def path(self, name: str) -> str:
        """The filesystem path of `name` (relative to the run root)."""
        return f"{self.root}/{name}"

    def url(self, name: str = "") -> str:
        """Where `name` lives, for messages: a local path or scheme://bucket/key (no options)."""
        path = self.path(name) if name else self.root
        return path if self.local else f"{self.uri.split('://', 1)[0]}://{path}"

    def warn_once(self, key: str, message: str) -> None:
        """Log `message` as a warning unless this process already gave it about `key` of this run: the
        driver, its in-process assembly and the report each open the run, and a CLI command says it once."""
        key = f"{self.url(key)}: {message}"
        if key not in _WARNED:
            _WARNED.add(key)
            log.warning("%s", message)

    def make_parent(self, path: str) -> None:
        """Make the directory of local `path` (once per process and run; object stores have none)."""
        parent = path.rsplit("/", 1)[0]
        if parent not in self._made_dirs:
            self.fs.create_dir(parent, recursive=True)
            self._made_dirs.add(parent)

    @staticmethod
    def temp_path(path: str) -> str:
        """A temporary path beside `path`, for writing it whole."""
        # Dot-prefixed, so listings and index reads skip half-written files;
        # the original name stays at the end so tools that go by extension work.
        parent, base = path.rsplit("/", 1)
        return f"{parent}/.tmp-{uuid.uuid4().hex[:12]}-{base}"

    def write_bytes(self, name: str, data: Bytes | pa.Buffer) -> None:
        """Write `name` all-or-nothing: temp file + move locally, one PUT on object stores.

        For the run's own small files (frames, index, records). Outputs go
        through `publish` / `staged`, which never publish a partial object.

        Raises:
            StoreError: the write kept failing.
        """
        path = self.path(name)

        def put() -> None:
            if not self.local:
                with self.fs.open_output_stream(path) as out:
                    out.write(data)
                return
            tmp = self.temp_path(path)
            self.make_parent(path)
            try:
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.move(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(tmp)
                raise

        self.retry(f"cannot write {name}", put)

    def read_bytes(self, name: str) -> bytes:
        """The content of `name`.

        Raises:
            FileNotFoundError: `name` does not exist.
            StoreError: the read kept failing.
        """

        def get() -> bytes:
            with self.fs.open_input_stream(self.path(name)) as f:
                return f.read()

        return self.retry(f"cannot read {name}", get, missing_ok=True)

    def size(self, name: str) -> int | None:
        """The size of file `name`, or None if there is none."""
        info = self.retry(f"cannot look up {name}", lambda: self.fs.get_file_info(self.path(name)))
        return info.size if info.type == pafs.FileType.File else None

    def exists(self, name: str) -> bool:
        """Whether `name` exists as a file in the run."""
        return self.size(name) is not None

    def delete(self, name: str) -> None:
        """Delete `name` if it exists."""

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self.path(name))

        self.retry(f"cannot delete {name}", remove)

    def delete_dir(self, subdir: str) -> None:
        """Delete everything under `subdir/` (nothing to do if it does not exist)."""
        delete = lambda: self.fs.delete_dir_contents(self.path(subdir), missing_dir_ok=True)  # noqa: E731
        self.retry(f"cannot delete {subdir}/", delete)

    def list(self, subdir: str) -> list[pafs.FileInfo]:
        """The files directly under `subdir/`, without dot-files (temporary names); [] if there is none."""
        selector = pafs.FileSelector(self.path(subdir), allow_not_found=True)
        infos = self.retry(f"cannot list {subdir}/", lambda: self.fs.get_file_info(selector))
        return [i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")]

    def move(self, name: str, target: str) -> None:
        """Move `name` to `target` (both in the run). Raises: StoreError: the move kept failing."""

        def move() -> None:
            if self.local:
                self.make_parent(self.path(target))
            self.fs.move(self.path(name), self.path(target))

        self.retry(f"cannot move {name} to {target.rsplit('/', 1)[0]}/", move)

    def create_exclusive(self, name: str, data: Bytes) -> bool:
        """Write `name` whole only if it does not exist: True if this call wrote it.

        Locally a complete temporary file is hard-linked to `name` (``link``
        fails if the name exists, and nobody ever reads a half-written file).
        False where the name exists, and where the filesystem cannot promise
        it (object stores: pyarrow.fs has no create-if-absent; mounts without
        hard links): the caller writes and reads back instead.

        Raises:
            StoreError: the write kept failing.
        """
        if not self.local:
            return False
        path = self.path(name)

        def link() -> bool:
            tmp = self.temp_path(path)
            try:
                self.make_parent(path)
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno in _NO_LINKS:
                    return False
                raise
            finally:
                with contextlib.suppress(OSError):
                    os.remove(tmp)

        return self.retry(f"cannot write {name}", link)
