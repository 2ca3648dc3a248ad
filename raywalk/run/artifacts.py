"""What a run computes once and every chunk and resume reuses: the prompts' encodings (keyframes), the walk
table (timing), the first pass's images (pacing), and the frame-to-frame distances (smoothness).

Keyframes and a timing table that do not match the SHA-256 the manifest
records are not used (invariant 6): a warning names them, and they are made
again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raywalk.errors import describe
from raywalk.run.fs import RunFS
from raywalk.run.layout import KEYFRAMES, PACING, SMOOTHNESS, TIMING
from raywalk.run.records import output_ok

log = logging.getLogger(__name__)

ARRAY_PART = "_array"  # the name under which keyframes given as one array (not named parts) are stored
PICTURES_PART = "pictures"  # the renderer's latents of the job's pictures, stored with the prompts' encodings

Keyframes = np.ndarray | Mapping[str, np.ndarray]  # one array, or named parts (a renderer's text encodings)


def write_keyframes(files: RunFS, keyframes: Keyframes, pictures: np.ndarray | None = None) -> str:
    """Store the prompts' encodings (named parts, or one array) and, for a job with pictures, their latents
    (part PICTURES_PART), as float32; returns the SHA-256 of the stored bytes, for the manifest's
    `keyframes_sha256`. Raises: StoreError."""
    parts = dict(keyframes) if isinstance(keyframes, Mapping) else {ARRAY_PART: keyframes}
    if pictures is not None:
        parts[PICTURES_PART] = pictures
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **{name: np.asarray(part, np.float32) for name, part in parts.items()})
    files.write_bytes(KEYFRAMES, buf.getbuffer())
    return hashlib.sha256(buf.getbuffer()).hexdigest()


def read_keyframes(files: RunFS, expected_sha256: str | None = None) -> np.ndarray | dict[str, np.ndarray] | None:
    """The stored keyframe encodings, or None if they are missing, damaged or not the expected ones.

    With `expected_sha256` (the manifest's), bytes of any other hash are
    refused. Every refusal is named in a warning; a missing file is only
    worth one when the manifest says it should be there.
    """
    where = files.url(KEYFRAMES)
    try:
        raw = files.read_bytes(KEYFRAMES)
    except FileNotFoundError:
        if expected_sha256 is not None:
            log.warning("%s is missing (the manifest records keyframes %s)", where, expected_sha256[:12])
        return None
    if expected_sha256 is not None and hashlib.sha256(raw).hexdigest() != expected_sha256:
        log.warning("%s does not match the manifest (SHA-256 %s expected); not using it", where, expected_sha256[:12])
        return None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as stored:
            parts = {name: stored[name] for name in stored.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("%s is damaged (%s); not using it", where, describe(exc))
        return None
    return parts[ARRAY_PART] if list(parts) == [ARRAY_PART] else parts


def split_pictures(
    stored: np.ndarray | dict[str, np.ndarray],
) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray | None]:
    """Stored keyframes as (the prompts' encodings, as `read_keyframes` gives them without pictures; the
    pictures' latents, or None)."""
    if not isinstance(stored, dict) or PICTURES_PART not in stored:
        return stored, None
    parts = {name: part for name, part in stored.items() if name != PICTURES_PART}
    texts = parts[ARRAY_PART] if list(parts) == [ARRAY_PART] else parts
    return texts, np.asarray(stored[PICTURES_PART])


def write_timing(files: RunFS, table: np.ndarray) -> str:
    """Store the walk table (one float64 u per frame, `raywalk.core.timing.job_table`); returns the SHA-256
    of the stored bytes, for the manifest's `timing_sha256`. Raises: StoreError."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(table, dtype=np.float64), allow_pickle=False)
    files.write_bytes(TIMING, buf.getbuffer())
    return hashlib.sha256(buf.getbuffer()).hexdigest()


def read_timing(files: RunFS, expected_sha256: str | None) -> np.ndarray | None:
    """The stored walk table if its SHA-256 is `expected_sha256` (the manifest's), else None (missing,
    damaged, another run's, or no hash recorded yet); a refusal of a recorded table is named in a warning."""
    if expected_sha256 is None:
        return None
    try:
        raw = files.read_bytes(TIMING)
    except FileNotFoundError:
        log.warning("%s is missing (the manifest records table %s)", files.url(TIMING), expected_sha256[:12])
        return None
    if hashlib.sha256(raw).hexdigest() != expected_sha256:
        log.warning("%s does not match the manifest; not using it", files.url(TIMING))
        return None
    try:
        return np.asarray(np.load(io.BytesIO(raw), allow_pickle=False), dtype=np.float64)
    except (ValueError, OSError, EOFError) as exc:
        log.warning("%s is damaged (%s); not using it", files.url(TIMING), describe(exc))
        return None


def pacing_frames(files: RunFS) -> set[int]:
    """The first-pass images the run holds (written whole, so present means done; `pacing_name` names them)."""
    stems = (i.base_name.removesuffix(".png") for i in files.list(PACING) if i.base_name.endswith(".png"))
    return {int(stem) for stem in stems if stem.isdigit()}


def read_smoothness(files: RunFS, run_id: str) -> np.ndarray | None:
    """Distances from each frame to the next recorded for run `run_id` (smoothness.parquet), or None."""
    if not output_ok(files, SMOOTHNESS, run_id):
        return None
    try:
        raw = pa.BufferReader(files.read_bytes(SMOOTHNESS))
        table = pq.read_table(raw, columns=["distance_to_next"], use_threads=False)  # see run.current._all_done
    except (FileNotFoundError, OSError, pa.ArrowException) as exc:
        files.warn_once(SMOOTHNESS, f"{files.url(SMOOTHNESS)} is damaged ({describe(exc)}); ignoring it")
        return None
    return np.asarray(table["distance_to_next"].to_numpy(), dtype=np.float64)
