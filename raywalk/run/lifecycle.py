"""A run's manifest on storage, and the two ways a run begins again: a fresh start and a repair.

Enforces invariant 3 of the run directory (see `raywalk.run`): a fresh start
writes the new manifest, with a new run id, before deleting anything, so from
that write on the old run's rows are fenced off even if the deletions never
finish.
"""

from __future__ import annotations

import json

from raywalk.concurrency import bounded_map
from raywalk.core.frameinfo import FRAME_FORMAT
from raywalk.core.job import Job
from raywalk.errors import RunLocationError, describe
from raywalk.run.fs import RunFS
from raywalk.run.index import RunIndex
from raywalk.run.layout import (
    DAMAGED,
    FAILURES,
    FRAMES,
    FRAMES_TABLE,
    INDEX,
    KEYFRAMES,
    MANIFEST,
    OUTPUTS,
    PACING,
    PREVIEW,
    SMOOTHNESS,
    SOUNDTRACK,
    TIMING,
)
from raywalk.run.manifest import Manifest, ManifestError, new_manifest
from raywalk.run.records import write_json

_DELETERS = 8  # stray frames deleted at once by a fresh start


def write_manifest(files: RunFS, manifest: Manifest) -> None:
    """Record the run's manifest (see `raywalk.run.manifest`). Raises: StoreError."""
    write_json(files, MANIFEST, manifest.to_json())


def read_manifest(files: RunFS) -> Manifest | None:
    """The run's manifest, validated, or None for a new run.

    Raises:
        ManifestError: manifest.json is damaged (one line, with the fix).
        StoreError: the read kept failing.
    """
    try:
        raw = files.read_bytes(MANIFEST)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(
            f"{files.url(MANIFEST)} is damaged (not JSON: {describe(exc)}); render the job "
            "file into this run again to repair it (`raywalk render JOB --out RUN`)"
        ) from None
    return Manifest.from_json(data, source=files.url(MANIFEST))


def require_manifest(files: RunFS) -> Manifest:
    """The run's manifest.

    Raises:
        RunLocationError: the location holds no run (ManifestError: a damaged manifest).
    """
    manifest = read_manifest(files)
    if manifest is None:
        if not files.root_exists():
            raise RunLocationError(f"{files.uri}: no run there")
        raise RunLocationError(f"{files.uri}: holds no raywalk run (no manifest.json)")
    return manifest


def start_fresh(files: RunFS, manifest: Manifest) -> None:
    """Begin a new run (`manifest`, with a run id of its own) over whatever the location holds.

    The manifest is written first, which fences the old run off (its rows no
    longer count); then the old run's index (damaged files too), failures,
    keyframes, output records, previews and final outputs (frames.parquet
    too) go, and frames past the new job's frame count. Frames below it are
    left to be overwritten. The timing table, soundtrack copy and first-pass
    images of the old run go too: the new one measures its own.

    Raises:
        StoreError: storage kept failing (the run is fenced off once the manifest is written).
    """
    try:
        old = read_manifest(files)
    except ManifestError:
        old = None
    write_manifest(files, manifest)
    outputs = {r.base_name.removesuffix(".json") for r in files.list(OUTPUTS)}
    for job in (old.job if old else None, manifest.job):
        if job is not None:
            outputs.update(job.output_files().values())
    for subdir in (INDEX, DAMAGED, FAILURES, OUTPUTS, PREVIEW, SOUNDTRACK, PACING):
        files.delete_dir(subdir)
    for name in sorted(outputs) + [KEYFRAMES, TIMING, SMOOTHNESS, FRAMES_TABLE]:
        files.delete(name)
    stray = [
        i.base_name
        for i in files.list(FRAMES)
        if not i.base_name[:-4].isdigit() or int(i.base_name[:-4]) >= manifest.num_frames
    ]
    list(bounded_map(lambda base: files.delete(f"{FRAMES}/{base}"), stray, _DELETERS))


def adopt(files: RunFS, index: RunIndex, job: Job) -> Manifest:
    """Repair a run of `job` whose manifest is damaged: write a fresh manifest that keeps the run id of the
    newest index rows of `job` (else a new one), so their frames stay done, and the frame format those rows
    show (format 1 if none of them has a `parameters` text), so resumes match their bytes.

    The keyframes and timing table are deleted: nothing says which job they
    were made for, and re-encoding the prompts or measuring the table again
    costs far less than one frame of doubt.

    Raises:
        StoreError: storage kept failing.
    """
    run_id, has_text = index.newest_run(job.fingerprint())
    manifest = new_manifest(job)
    if run_id is not None:  # its frames keep their format: rows without text were written in format 1
        manifest = manifest.replace(run_id=run_id, frame_format=FRAME_FORMAT if has_text else 1)
    files.delete(KEYFRAMES)
    files.delete(TIMING)
    write_manifest(files, manifest)
    return manifest
