"""The run's JSON records about itself: what each published output is, and why a chunk gave up.

An output's record (outputs/walk.gif.json) holds its size, SHA-256 and run id,
so assembly can tell a whole output of this run (`output_ok`) from one of an
earlier run or a half-replaced one: the old record goes before new bytes are
published. Garbage records are ignored with a warning (invariant 6).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from raywalk.errors import BadInputError, describe
from raywalk.run.fs import Bytes, RunFS
from raywalk.run.layout import FAILURES, failure_chunk, failure_name, output_record_name
from raywalk.run.publish import COPY_BLOCK, publish, staged
from raywalk.run.sources import source_blocks, source_exists


def write_json(files: RunFS, name: str, data: Mapping[str, Any]) -> None:
    """Write a JSON record. Raises: StoreError: the write kept failing."""
    files.write_bytes(name, json.dumps(data, indent=2, default=str).encode())


def read_json(files: RunFS, name: str) -> dict[str, Any] | None:
    """A JSON object record, or None if it is missing or damaged (damage is logged as a warning).

    Raises:
        StoreError: the read kept failing.
    """
    try:
        raw = files.read_bytes(name)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        data = exc
    if not isinstance(data, dict):
        what = describe(data) if isinstance(data, Exception) else f"a JSON {type(data).__name__}"
        files.warn_once(name, f"{files.url(name)} is damaged ({what}); ignoring it")
        return None
    return data


# ---------------------------------------------------------------------------- outputs


def _record_output(files: RunFS, name: str, size: int, sha256: str, run_id: str) -> None:
    record = {"name": name, "bytes": size, "sha256": sha256, "run_id": run_id, "written": time.time()}
    write_json(files, output_record_name(name), record)


def write_output(files: RunFS, name: str, data: Bytes, run_id: str | None = None) -> None:
    """Publish output `name` whole (`raywalk.run.publish`), recorded for `run_id` unless it is None (previews).

    Raises:
        StoreError: the write kept failing; nothing is left under `name`'s temporary name.
    """
    if run_id is not None:
        files.delete(output_record_name(name))
    size, sha256 = publish(files, name, lambda: [data])
    if run_id is not None:
        _record_output(files, name, size, sha256, run_id)


@contextlib.contextmanager
def local_output(files: RunFS, name: str, run_id: str | None = None) -> Iterator[str]:
    """A local file path to write output `name` into; published whole (`raywalk.run.publish.staged`) only if
    the block succeeds, and, with `run_id`, recorded for `output_ok`.

    Raises:
        StoreError: the upload kept failing.
    """
    if run_id is not None:
        files.delete(output_record_name(name))
    with staged(files, name, measure=run_id is not None) as (path, published):
        yield path
    if run_id is not None:
        assert published.bytes is not None and published.sha256 is not None
        _record_output(files, name, published.bytes, published.sha256, run_id)


def copy_in(files: RunFS, name: str, source: str | os.PathLike[str], sha256: str, run_id: str) -> None:
    """Copy `source` (a local path or a pyarrow.fs URI: a file the job names) into the run as `name`,
    streamed and whole, only if its SHA-256 is `sha256`, which is computed while it streams (the file is read
    once); recorded for `run_id` like an output (`holds`).

    Raises:
        BadInputError: the file cannot be read, or its bytes are not `sha256`'s (nothing is left under `name`).
        StoreError: the upload kept failing.
    """
    where = os.fspath(source)
    if not source_exists(where):
        raise BadInputError(f"{where}: not found, and the run holds no copy of it")
    files.delete(output_record_name(name))
    size, digest = publish(files, name, lambda: source_blocks(where, COPY_BLOCK), expect_sha256=sha256)
    _record_output(files, name, size, digest, run_id)


def output_record(files: RunFS, name: str) -> dict[str, Any] | None:
    """What was recorded when output `name` was published (bytes, sha256, run_id, written), if anything."""
    return read_json(files, output_record_name(name))


def holds(files: RunFS, name: str, sha256: str) -> bool:
    """Whether the run holds `name` whole with SHA-256 `sha256`, as `copy_in` recorded it."""
    record = output_record(files, name)
    return record is not None and record.get("sha256") == sha256 and files.size(name) == record.get("bytes")


def output_ok(files: RunFS, name: str, run_id: str) -> bool:
    """Whether output `name` is there, whole, from run `run_id`: its record names that run and its size
    matches the file (so assembly can be skipped)."""
    record = output_record(files, name)
    if record is None or record.get("run_id") != run_id:
        return False
    return files.size(name) == record.get("bytes")


# ---------------------------------------------------------------------------- failures


def write_failure(files: RunFS, chunk: int, info: Mapping[str, Any]) -> None:
    """Record why a chunk gave up (error, attempts, ...)."""
    write_json(files, failure_name(chunk), info)


def clear_failure(files: RunFS, chunk: int) -> None:
    """Forget a chunk's failure (it has been rendered since)."""
    files.delete(failure_name(chunk))


def read_failures(files: RunFS) -> dict[int, dict[str, Any]]:
    """Recorded failures by chunk number; a damaged record is left out with a warning naming it."""
    failures = {}
    for info in files.list(FAILURES):
        chunk = failure_chunk(info.base_name)
        if chunk is not None:
            record = read_json(files, f"{FAILURES}/{info.base_name}")
            if record is not None:
                failures[chunk] = record
    return dict(sorted(failures.items()))
