"""The files a job names outside its run (a soundtrack, pictures), read where the job says: a local path or a
pyarrow.fs URI (s3://, gs://, file://). Read in blocks, never whole unless bounded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa

from raywalk.run.fs import filesystem
from raywalk.run.publish import COPY_BLOCK

__all__ = ["read_source", "source_blocks", "source_exists"]


@contextlib.contextmanager
def _opened(source: str) -> Iterator[BinaryIO]:
    """`source` open for reading.

    Raises:
        OSError: it cannot be opened (FileNotFoundError where it is not there).
    """
    try:
        fs, path = filesystem(source)
        stream = fs.open_input_stream(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise OSError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    with stream:
        yield stream


def source_blocks(source: str, block: int = COPY_BLOCK) -> Iterator[bytes]:
    """The bytes of `source`, `block` at a time.

    Raises:
        OSError: it cannot be read.
    """
    with _opened(source) as stream:
        while data := stream.read(block):
            yield bytes(data)


def read_source(source: str, limit: int) -> bytes:
    """The bytes of `source`, at most `limit + 1` of them (more than `limit` tells the caller it is too large).

    Raises:
        OSError: it cannot be read.
    """
    with _opened(source) as stream:
        return bytes(stream.read(limit + 1))


def source_exists(source: str) -> bool:
    """Whether `source` is a file that can be opened here."""
    try:
        with _opened(source):
            return True
    except OSError:
        return False
