"""Whether a run has nothing left to do (`finished`): every frame done, and every product (the job's outputs,
frames.parquet, smoothness.parquet, report.html) built from the run as it is now.

`raywalk resume` and `raywalk render` ask this first, so that running either again on a finished run costs one
read of the run and imports neither Ray nor a plotting library; anything missing, damaged or out of date goes
the normal way (`raywalk.exec.render`), which builds it. Outputs record the run they were made from
(`records.output_ok`); the report records what it was built from as well (`record_report`): the run's manifest,
the index's rows, the failures and the products it shows, digested (`report_basis`), so a report that no longer
tells the truth about the run is built again.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pyarrow.compute as pc

from raywalk._version import __version__
from raywalk.core.job import Job
from raywalk.run.layout import FRAMES_TABLE, REPORT, SMOOTHNESS, output_record_name, soundtrack_name
from raywalk.run.manifest import Manifest, ManifestError
from raywalk.run.records import write_json
from raywalk.run.state import IndexRead, RunState
from raywalk.run.store import RunStore


def products(job: Job) -> list[str]:
    """What a finished run of `job` holds besides its frames, the report aside: the job's outputs,
    frames.parquet and (but for a grid, whose frames are no walk) smoothness.parquet."""
    names = [*job.output_files().values(), FRAMES_TABLE]
    return names if job.walk.kind == "grid" else [*names, SMOOTHNESS]


def report_basis(store: RunStore, manifest: Manifest, index: IndexRead, failures: dict[int, Any], job: Job) -> str:
    """A digest of what the report of the run says: where the run is, the raywalk that writes the page, the
    manifest, the index's rows (they are only ever added: their count and the newest time), the recorded
    failures and the products' records (the page shows the outputs)."""
    written = pc.max(index.rows["written"]).as_py() if index.rows.num_rows else None
    what = {
        "url": store.url(),
        "raywalk": __version__,
        "manifest": manifest.to_json(),
        "rows": index.rows.num_rows,
        "newest_row": written,
        "failures": {str(chunk): failure for chunk, failure in failures.items()},
        "products": {name: (store.output_record(name) or {}).get("sha256") for name in products(job)},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def record_report(store: RunStore, job: Job, index: IndexRead) -> None:
    """Record that report.html, just written from `index`, tells the truth about the finished run as it is now
    (see `finished`).

    Raises:
        StoreError: storage kept failing.
    """
    manifest = store.require_manifest()
    record = {
        "name": REPORT,
        "bytes": store.files.size(REPORT),
        "run_id": index.run_id,
        "basis": report_basis(store, manifest, index, store.read_failures(), job),
        "written": time.time(),
    }
    write_json(store.files, output_record_name(REPORT), record)


def finished(store: RunStore, job: Job, verify: bool = False) -> bool:
    """Whether a render of `job` into `store` has nothing to do: the location holds a run of `job` that no
    driver holds, with its soundtrack, every frame done (rehashed, with `verify`), no index file damaged,
    and its products and report current. Cheap checks first; the index is read once, last.

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
    name, path, timing = soundtrack_name(job), job.audio_file(), job.timing
    if name and path and timing and timing.sha256 and not store.holds(name, timing.sha256):
        return False
    run_id = manifest.run_id
    report = store.output_record(REPORT)  # as `output_ok` checks a record, and its basis below
    if report is None or report.get("run_id") != run_id or store.files.size(REPORT) != report.get("bytes"):
        return False
    if not all(store.output_ok(name, run_id) for name in products(job)):
        return False
    state = RunState.read(store, manifest, verify)
    if state.missing or store.damaged or state.index is None:
        return False
    return report.get("basis") == report_basis(store, manifest, state.index, state.failures, job)
