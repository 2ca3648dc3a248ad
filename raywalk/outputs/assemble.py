"""What to build from a job, in order: the outputs it asks for (GIF, MP4, grid image, contact sheet).

The run is checked once, before anything is written (`raywalk.outputs.target`);
each output is then streamed from the run's frames in index order
(`raywalk.outputs.frames`) and published through the store (temporary name,
then moved into place, then recorded with its size, SHA-256 and run id), so a
reader never sees half an animation under a final name. Partial outputs go
under `preview/` and say PARTIAL in their metadata.

A timed walk's MP4 carries the run's soundtrack over the leading consecutive
frames (`raywalk.outputs.mp4`). Every complete assembly also publishes
frames.parquet from the same read of the index that checks the frames
(`raywalk.outputs.frames_table`); a complete run's neighbour distances are
published as smoothness.parquet (`raywalk.outputs.smoothness`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from raywalk.core.commands import resume_command
from raywalk.core.job import Job
from raywalk.core.output_table import OUTPUT_SUFFIXES
from raywalk.outputs.defaults import output_options
from raywalk.outputs.frames_table import publish_frames_table
from raywalk.outputs.gif import build_gif
from raywalk.outputs.mp4 import build_mp4
from raywalk.outputs.sheets import build_contact_sheet, build_grid
from raywalk.outputs.smoothness import write_smoothness as write_smoothness  # where the driver imports it from
from raywalk.outputs.target import target
from raywalk.run.pictures import picture_label, picture_roles, read_picture
from raywalk.run.store import FRAMES_TABLE, RunStore, frame_ranges, soundtrack_name

log = logging.getLogger(__name__)

# kind -> the builder of that output from checked frames
_BUILDERS: dict[str, Callable[..., str]] = {
    "gif": build_gif,
    "mp4": build_mp4,
    "grid": build_grid,
    "contact_sheet": build_contact_sheet,
}


def assemble(
    store: RunStore,
    num_frames: int,
    outputs: Mapping[str, Mapping[str, Any]],
    job_name: str,
    grid_size: int | None = None,
    partial: bool = False,
    note: str = "",
    run_id: str | None = None,
    soundtrack: str | None = None,
    rows: tuple[np.ndarray, pa.Table] | None = None,
    pictures: Sequence[tuple[np.ndarray, str]] = (),
) -> list[str]:
    """Build the outputs a job asks for (kind -> options) as `{job_name}.gif` etc.; returns where.

    The run (`run_id`, default the manifest's) is checked once, before
    anything is written: missing frames raise MissingFramesError naming them,
    unless `partial`, which builds previews under preview/ from the frames done
    so far (and logs which are missing). `note` goes into every output's
    metadata (GIF comment, MP4 comment, PNG text), after PARTIAL for previews.
    Final outputs are recorded for the run (`RunStore.output_ok`), and
    frames.parquet is published with them (`publish_frames_table`). With
    `soundtrack` (the run's copy), the MP4 carries it, over the leading
    consecutive frames only (a preview without frame 0 has no MP4). `rows` is
    `store.frame_rows(num_frames, run_id)` when the caller has read it already.
    `pictures` (pixels and label) head the contact sheet.

    Raises:
        ValueError: an unknown output kind or option, or a grid without `grid_size`.
        MissingFramesError: frames are missing and not `partial`.
        AssembleError: no frame is done, or one cannot be read.
    """
    unknown = set(outputs) - set(_BUILDERS)
    if unknown:
        raise ValueError(f"unknown output kinds: {', '.join(sorted(unknown))}")
    if "grid" in outputs and not grid_size:
        raise ValueError("a grid output needs grid_size")
    options = {kind: output_options(kind, opts) for kind, opts in outputs.items()}
    if "grid" in options:
        options["grid"]["n"] = grid_size
    if "contact_sheet" in options and pictures:
        options["contact_sheet"]["pictures"] = pictures
    frames, prefix, run_id, note = target(store, num_frames, "", partial, note, run_id, frames_table=True, rows=rows)
    leading = frames[: next((i for i, f in enumerate(frames) if f != i), len(frames))]
    if soundtrack is not None and "mp4" in options:
        if leading:
            options["mp4"] = {**options["mp4"], "soundtrack": soundtrack}
        else:
            log.warning("no MP4 preview: frame 0 is not rendered yet, and the soundtrack starts with it")
            del options["mp4"]
    built = []
    for kind, opts in options.items():
        name = f"{prefix}{job_name}{OUTPUT_SUFFIXES[kind]}"
        picked = leading if "soundtrack" in opts else frames
        built.append(_BUILDERS[kind](store, picked, name, note=note, run_id=run_id, **opts))
    return built


def assemble_job(
    store: RunStore, job: Job, partial: bool = False, rows: tuple[np.ndarray, pa.Table] | None = None
) -> list[str]:
    """The outputs a validated job asks for (what `render` runs at the end), each saying how it was made.
    `rows` is `store.frame_rows(job.num_frames, run_id)` when the caller has read it already.

    Raises:
        MissingFramesError: frames are missing and not `partial`.
        AssembleError: no frame is done, or one cannot be read.
    """
    grid_size = job.walk.size if job.walk.kind == "grid" else None
    manifest = store.require_manifest()
    note = f"raywalk {manifest.raywalk}: job {job.name}, fingerprint {job.fingerprint()[:12]}"
    if manifest.random_weights:
        note += "; RANDOM WEIGHTS: the images are noise from an untrained model"
    return assemble(
        store,
        job.num_frames,
        job.outputs.files,
        job.name,
        grid_size,
        partial,
        note,
        manifest.run_id,
        soundtrack=soundtrack_name(job),
        rows=rows,
        pictures=[(read_picture(store, p), picture_label(p, role)) for p, role in picture_roles(job)]
        if "contact_sheet" in job.outputs.files
        else (),
    )


def assemble_run(uri: str, partial: bool = False) -> Iterator[str]:
    """`raywalk assemble URI`: the outputs of the job in the run's manifest, as printable lines."""
    store = RunStore(uri)
    job = store.read_job()
    if not job.outputs.files:
        yield f"job {job.name} asks for no outputs (add an outputs section to its job file)"
        if not partial:
            where = publish_frames_table(store, job.num_frames, store.require_manifest().run_id)
            yield where or f"no {FRAMES_TABLE}: frames are missing (run `{resume_command(store.uri)}`)"
        return
    missing = store.missing_frames(job.num_frames) if partial else []
    if missing:
        yield (
            f"previews from {job.num_frames - len(missing)} of {job.num_frames} frames "
            f"({len(missing)} missing: {frame_ranges(missing)})"
        )
    yield from assemble_job(store, job, partial)
    if not partial:
        yield store.url(FRAMES_TABLE)  # published with the outputs
