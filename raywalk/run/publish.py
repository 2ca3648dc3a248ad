"""Publishing a file whole under its final name, and reading one back as a local file.

Enforces invariant 4 of the run directory (see `raywalk.run`): a file under its
final name is whole. It is uploaded under a temporary name and moved into
place, because pyarrow completes an interrupted S3 upload
(https://github.com/apache/arrow/issues/40502).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import cast

import pyarrow as pa

from raywalk.errors import BadInputError
from raywalk.hashing import file_blocks, sha256_blocks
from raywalk.run.fs import Bytes, RunFS

COPY_BLOCK = 8 << 20  # what one block of an upload or download holds


def _written(out: pa.NativeFile, blocks: Iterable[Bytes]) -> Iterator[bytes]:
    """`blocks`, each written to `out` as it passes (so the upload is hashed in the same pass)."""
    for block in blocks:
        out.write(block)
        yield cast(bytes, block)  # hashlib takes any buffer


@dataclasses.dataclass
class Published:
    """What `staged` published: its size and SHA-256 (None when not measured)."""

    bytes: int | None = None
    sha256: str | None = None


def publish(
    files: RunFS, name: str, blocks: Callable[[], Iterable[Bytes]], expect_sha256: str | None = None
) -> tuple[int, str]:
    """Put the bytes `blocks()` yields under `name` whole; returns their size and SHA-256.

    The data goes under a temporary name that is moved into place only once
    the upload succeeded: pyarrow completes a multipart upload on close even
    while an exception propagates (a Ctrl-C mid-upload would publish a
    truncated object under the final name,
    https://github.com/apache/arrow/issues/40502). The temporary object is
    deleted on any failure. With `expect_sha256`, bytes of another hash are
    never moved into place.

    Raises:
        BadInputError: the bytes do not have `expect_sha256`.
        StoreError: the upload kept failing.
    """
    path = files.path(name)

    def upload() -> tuple[int, str]:
        tmp = files.temp_path(path)
        try:
            if files.local:
                files.make_parent(path)
            with files.fs.open_output_stream(tmp) as out:
                sha256, size = sha256_blocks(_written(out, blocks()))
            if expect_sha256 is not None and sha256 != expect_sha256:
                raise BadInputError(
                    f"{name}: its SHA-256 is {sha256[:12]}..., not the {expect_sha256[:12]}... "
                    "the job recorded (the file changed after the job was loaded)"
                )
            files.fs.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                files.fs.delete_file(tmp)
            raise
        return size, sha256

    return files.retry(f"cannot write {name}", upload)


@contextlib.contextmanager
def staged(files: RunFS, name: str, measure: bool = True) -> Iterator[tuple[str, Published]]:
    """A local file path to write `name` into, published whole only if the block succeeds, and (filled
    in once published, with `measure`) its size and SHA-256.

    For files written by other programs or libraries (ffmpeg, encoders that
    want a real file). Local runs get a temporary name in the run directory
    moved into place; object stores get a local temporary file uploaded in
    blocks by `publish`, so a file of any size never has to fit in memory.

    Raises:
        StoreError: the upload kept failing.
    """
    published = Published()
    if not files.local:
        with tempfile.TemporaryDirectory(prefix="raywalk-") as tmpdir:
            tmp = os.path.join(tmpdir, os.path.basename(name))
            yield tmp, published
            published.bytes, published.sha256 = publish(files, name, lambda: file_blocks(tmp, COPY_BLOCK))
        return
    path = files.path(name)
    files.retry(f"cannot write {name}", lambda: files.make_parent(path))
    tmp = files.temp_path(path)
    try:
        yield tmp, published
        if measure:
            published.sha256, published.bytes = sha256_blocks(file_blocks(tmp, COPY_BLOCK))
        files.retry(f"cannot write {name}", lambda: files.fs.move(tmp, path))
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


@contextlib.contextmanager
def local_file(files: RunFS, name: str) -> Iterator[str]:
    """A local path holding the bytes of `name` (for libraries that want a file): the file itself on a
    local run, else a temporary copy downloaded in blocks and deleted afterwards.

    Raises:
        FileNotFoundError: `name` does not exist.
        StoreError: the download kept failing.
    """
    if files.local:
        if files.size(name) is None:
            raise FileNotFoundError(files.url(name))
        yield files.path(name)
        return
    with tempfile.TemporaryDirectory(prefix="raywalk-") as tmpdir:
        tmp = os.path.join(tmpdir, os.path.basename(name))

        def download() -> None:
            with files.fs.open_input_stream(files.path(name)) as src, open(tmp, "wb") as out:
                while block := src.read(COPY_BLOCK):
                    out.write(block)

        files.retry(f"cannot read {name}", download, missing_ok=True)
        yield tmp
