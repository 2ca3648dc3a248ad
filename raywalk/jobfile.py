"""Job files: read one from disk, with its soundtrack and pictures probed, into a validated `Job`.

The edge between the pure core (`raywalk.core.spec`, which validates without
I/O) and the files a job names: it reads the job file defensively and hands
validation two probes: `raywalk.outputs.audio.probe`, which reads a soundtrack's
duration and SHA-256, and `probe_picture`, which reads a picture (a local path or
a pyarrow.fs URI, at most MAX_PICTURE_BYTES), decodes it and returns its SHA-256
and size. Each file is read once, and only for jobs that name it; job data that
records them (a run manifest) is not probed again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from raywalk.core.job import Job
from raywalk.core.limits import MAX_JOB_BYTES, MAX_PICTURE_BYTES
from raywalk.core.picture import PictureInfo, picture_info
from raywalk.core.spec import job_from_dict as _validate
from raywalk.core.spec import job_from_text
from raywalk.core.validate import SoundInfo
from raywalk.errors import JobError, PictureError
from raywalk.outputs.audio import probe
from raywalk.run.sources import read_source

__all__ = ["job_from_dict", "load_job", "probe_picture"]


def load_job(path: str | Path) -> Job:
    """Read and validate a YAML job file.

    Raises:
        JobError: the file cannot be read, is not a bounded YAML mapping, or does not validate.
    """
    source = str(path)
    return job_from_text(
        _read_text(Path(path), source), source, Path(path).stem, probe=_probe, picture_probe=probe_picture
    )


def job_from_dict(data: Any, source: str = "<dict>", default_name: str = "walk") -> Job:
    """Validate plain data into a `Job`, reading its soundtrack (relative to `source`'s folder) if it names one.

    Raises:
        JobError: the data does not validate, or its soundtrack cannot be read.
    """
    return _validate(data, source=source, default_name=default_name, probe=_probe, picture_probe=probe_picture)


def _probe(path: Path) -> SoundInfo:
    """The soundtrack's duration and hash (librosa and soundfile load only when a job has one).

    Raises:
        AudioError: the soundtrack cannot be read.
    """
    return probe(path)


def probe_picture(source: str) -> PictureInfo:
    """The SHA-256 and decoded size of the picture at `source` (a local path or a pyarrow.fs URI), read once.

    Raises:
        PictureError: it cannot be read, is larger than MAX_PICTURE_BYTES, or `decode_picture` refuses it.
    """
    try:
        data = read_source(source, MAX_PICTURE_BYTES)
    except OSError as exc:
        reason = "not found" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc))
        raise PictureError(f"{source}: cannot read: {reason}") from None
    if len(data) > MAX_PICTURE_BYTES:
        raise PictureError(f"{source}: more than the {MAX_PICTURE_BYTES:,} bytes a picture file may have")
    return picture_info(data, source)


def _read_text(path: Path, source: str) -> str:
    """The text of a regular file of at most MAX_JOB_BYTES, without opening anything else
    (a FIFO would block, /dev/zero never ends)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise JobError(f"{source}: cannot read job file: {kind}")
        if info.st_size > MAX_JOB_BYTES:
            raise JobError(
                f"{source}: cannot read job file: {info.st_size} bytes, more than the "
                f"{MAX_JOB_BYTES} a job file may have"
            )
        with open(path, "rb") as f:
            raw = f.read(MAX_JOB_BYTES + 1)
        if len(raw) > MAX_JOB_BYTES:
            raise JobError(f"{source}: cannot read job file: more than {MAX_JOB_BYTES} bytes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"{source}: cannot read job file: {getattr(exc, 'strerror', None) or exc}") from None
    if "\x00" in text:
        raise JobError(f"{source}: cannot read job file: it holds a NUL character")
    return text
