"""The helper tasks of a render, run in Ray next to the workers: the renderer check (on a worker's
resources), the walk table's measurement and the assembly of outputs and report (both reserving no CPU).

Each takes the typed, already validated `Job` (it pickles through Ray), never a dict to validate again.
"""

from __future__ import annotations

from typing import Any

import ray

from raywalk.core.job import Job
from raywalk.run.current import record_report
from raywalk.run.state import IndexRead, read_index
from raywalk.run.store import SMOOTHNESS, RunStore


def assemble_outputs(
    run: str | RunStore,
    job: Job,
    partial: bool = False,
    assemble: bool = True,
    frames_table: bool = False,
    releasing: str | None = None,
    index: IndexRead | None = None,
) -> list[str]:
    """Build the job's outputs (previews with `partial`; none without `assemble`) from the run (a URI, or the
    driver's own store when it runs in-process), then its report (which leaves out the lock of token
    `releasing`: the driver's own, released right after); a Ray task, since assembly decodes images, which the
    driver never holds. Assembling a complete run publishes frames.parquet (and moves damaged index files out
    of index/); `frames_table` does it without outputs. Outputs, smoothness and report share one read of the
    index: `index` where the caller holds a current one, else one read here (previews read their own). A
    finished run's report is recorded with what it was built from (`raywalk.run.current`).
    Returns where the outputs are (the report and frames.parquet not included)."""
    from raywalk.outputs.assemble import assemble_job, publish_frames_table, write_smoothness
    from raywalk.report.page import write_report

    store = run if isinstance(run, RunStore) else RunStore(run, create=False)
    assembled = assemble and bool(job.outputs.files)
    if partial:
        outputs = assemble_job(store, job, partial=True) if assembled else []
        write_report(store, releasing)
        return outputs
    run_id = store.require_manifest().run_id
    if index is None or index.run_id != run_id:
        index = read_index(store, job.num_frames, run_id)
    rows = (index.done, index.newest_rows())
    outputs = assemble_job(store, job, rows=rows) if assembled else []
    if frames_table and not assembled:
        publish_frames_table(store, job.num_frames, run_id, rows=rows)
    if job.walk.kind != "grid" and not store.output_ok(SMOOTHNESS, run_id) and index.done.all():
        write_smoothness(store, job.num_frames, run_id, done=index.done)
    write_report(store, releasing, index=index.rows, done=index.done)
    if index.done.all():  # a finished run: what its report was built from, so a no-op resume can skip it
        record_report(store, job)
    return outputs


def assemble_task():
    """`assemble_outputs` as a Ray task that reserves no CPU: previews are built while the render workers run,
    and workers may hold every CPU of the cluster (a reserved CPU would wait for them for ever). Assembly
    streams one frame at a time, so its load is light; it stays off the driver, which never holds an image."""
    return ray.remote(assemble_outputs).options(num_cpus=0, num_gpus=0, max_retries=0)


def measure_task(uri: str, job: Job) -> str:
    """The walk table measured and stored (`raywalk.exec.measure.measure_table`); returns its SHA-256."""
    from raywalk.exec.measure import measure_table

    return measure_table(RunStore(uri, create=False), job)


def check_task(model: Any, prompts: list[str], pictures: int = 0) -> str | None:
    """The renderer check on a worker's resources (the strict check refuses what it cannot verify, and a
    renderer that cannot start from the job's `pictures`); returns the Keras backend the renderer's workers must
    start with, as this worker's installation decides."""
    from raywalk.renderers.contract import check_renderer, keras_backend

    check_renderer(model, prompts, strict=True, pictures=pictures)
    return keras_backend(model)
