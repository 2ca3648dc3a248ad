"""Whether a run has nothing left to do (`finished`): every frame done, and every product (the job's outputs,
frames.parquet, smoothness.parquet, report.html) built from the run as it is now.

`raywalk resume` and `raywalk render` ask this first, so that running either again on a finished run reads a few
small records, two listings and frames.parquet (not the index's many files), and imports neither Ray nor a
plotting library; anything missing, damaged or out of date goes the normal way (`raywalk.exec.render`), which
builds it. Outputs record the run they were made from (`records.output_ok`); the report records what it was
built from as well (`record_report`): the run's manifest, the index's files, the failures and the products it
shows, digested (`report_basis`), so a report that no longer tells the truth about the run is built again.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raywalk._version import __version__
from raywalk.core.job import Job
from raywalk.run.inputs import run_inputs
from raywalk.run.layout import (
    FRAMES_TABLE,
    INDEX,
    REPORT,
    SMOOTHNESS,
    frame_file,
    output_record_name,
)
from raywalk.run.manifest import Manifest, ManifestError
from raywalk.run.records import write_json
from raywalk.run.state import RunState, frame_sizes
from raywalk.run.store import RunStore


def products(job: Job) -> list[str]:
    """What a finished run of `job` holds besides its frames, the report aside: the job's outputs,
    frames.parquet and (but for a grid, whose frames are no walk) smoothness.parquet."""
    names = [*job.output_files().values(), FRAMES_TABLE]
    return names if job.walk.kind == "grid" else [*names, SMOOTHNESS]


def report_basis(store: RunStore, manifest: Manifest, failures: dict[int, Any], job: Job) -> str:
    """A digest of what the report of the run says: where the run is, the raywalk that writes the page, the
    manifest, the index's files (never rewritten: new rows come in new files), the recorded failures and the
    products' records (the page shows the outputs).

    Raises:
        StoreError: storage kept failing.
    """
    what = {
        "url": store.url(),
        "raywalk": __version__,
        "manifest": manifest.to_json(),
        "index": sorted((info.base_name, info.size) for info in store.files.list(INDEX)),
        "failures": {str(chunk): failure for chunk, failure in failures.items()},
        "products": {name: (store.output_record(name) or {}).get("sha256") for name in products(job)},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def record_report(store: RunStore, job: Job) -> None:
    """Record that report.html, just written, tells the truth about the finished run as it is now (see
    `finished`); written under the render's lock, after the outputs, frames.parquet and smoothness.

    Raises:
        StoreError: storage kept failing.
    """
    manifest = store.require_manifest()
    record = {
        "name": REPORT,
        "bytes": store.files.size(REPORT),
        "run_id": manifest.run_id,
        "basis": report_basis(store, manifest, store.read_failures(), job),
        "written": time.time(),
    }
    write_json(store.files, output_record_name(REPORT), record)


def finished(store: RunStore, job: Job, verify: bool = False) -> bool:
    """Whether a render of `job` into `store` has nothing to do: the location holds a run of `job` that no
    driver holds, with its soundtrack and pictures, its products and a report built from the run as it is,
    and every frame done: its PNG has the size frames.parquet records, which holds the newest index row of
    each frame (the index unchanged since: its files are part of the report's basis), or with `verify`, one
    read of the index and every PNG rehashed (`RunState`). Cheap checks first.

    Raises:
        StoreError: storage kept failing.
    """
    if not store.root_exists():
        return False
    try:
        manifest = store.read_manifest()
    except ManifestError:
        return False
    if manifest is None or manifest.fingerprint != job.fingerprint() or store.read_lock() is not None:
        return False
    if not all(store.holds(item.name, item.sha256) for item in run_inputs(job)):
        return False
    run_id = manifest.run_id
    report = store.output_record(REPORT)  # as `output_ok` checks a record, and its basis below
    if report is None or report.get("run_id") != run_id or store.files.size(REPORT) != report.get("bytes"):
        return False
    if not all(store.output_ok(name, run_id) for name in products(job)):
        return False
    if report.get("basis") != report_basis(store, manifest, store.read_failures(), job):
        return False
    if verify:
        state = RunState.read(store, manifest, verify=True)
        return not state.missing and not store.damaged
    return _all_done(store, manifest.num_frames)


def _all_done(store: RunStore, num_frames: int) -> bool:
    """Whether frames.parquet (current for the run) holds a row for each of frames 0..num_frames-1 whose PNG
    exists with the size the row records. Through Python lists: pyarrow's scalars and `to_numpy` import pandas
    (a second, more than the rest of a no-op).

    Raises:
        StoreError: storage kept failing.
    """
    try:
        data = pa.BufferReader(store.read_bytes(FRAMES_TABLE))
        # Not read_table: it imports pandas. One thread: a thread of Arrow's pool still running when the
        # interpreter exits aborts it ("terminate called without an active exception", apache/arrow#34314).
        table = pq.ParquetFile(data).read(columns=["frame", "file", "bytes"], use_threads=False)
    except (FileNotFoundError, ValueError, pa.ArrowException):
        return False
    if table.num_rows != num_frames or any(column.null_count for column in table.columns):
        return False
    frame = np.array(table["frame"].to_pylist(), dtype=np.int64)  # to_numpy imports pandas too
    if not np.array_equal(np.sort(frame), np.arange(num_frames)):
        return False
    if table["file"].to_pylist() != [frame_file(f) for f in frame.tolist()]:
        return False
    return bool((np.array(table["bytes"].to_pylist()) == frame_sizes(store, num_frames)[frame]).all())
