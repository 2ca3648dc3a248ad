"""`raywalk report`: one self-contained HTML page about a run, from its manifest and index alone.

The page holds the job, the outputs already assembled (embedded as they are:
no frame is decoded), what is done, missing and failed, retries, throughput
over time, seconds per frame per worker and node, the walk parameter against
the frame, and the commands that finish, check and assemble the run. Images
and plots are inlined as data: URIs, so the file reads offline and anywhere
(a laptop, a bucket, an e-mail) without a server, a CDN or JavaScript.

It can be built for any run, finished or not, from any machine that can read
the store, and is written whole with one `RunStore.write_bytes` call.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from raywalk.core.commands import assemble_command, report_command, resume_command, status_command
from raywalk.core.job import Job
from raywalk.core.output_table import OUTPUT_SUFFIXES
from raywalk.core.pacing import max_jump, smoothness
from raywalk.report.html import CSS, Html, data_uri, escape, html_table, img, secs, short_id
from raywalk.report.pictures import ShownPicture, pictures_section, shown_pictures
from raywalk.report.plots import distances_plot, seconds_plot, throughput_plot, timing_plot, walk_plot
from raywalk.report.stats import (
    WRITTEN,
    GroupStats,
    node_stats,
    retried_chunks,
    throughput,
    walk_parameters,
    worker_restarts,
    worker_stats,
)
from raywalk.report.status import frames_per_stack, latest_done_rows, stack_lines
from raywalk.run.layout import REPORT
from raywalk.run.manifest import Manifest
from raywalk.run.store import RunStore, frame_ranges, preview_name

INLINE_LIMIT = 8 << 20  # outputs up to this size are embedded; larger ones are linked
_MIME = {".gif": "image/gif", ".mp4": "video/mp4", ".png": "image/png"}


def shell_commands(uri: str, missing: bool) -> list[tuple[str, str]]:
    """(what, command) pairs to finish, check and assemble the run at `uri`, shell-quoted."""
    commands = [
        ("render what is missing, then assemble", resume_command(uri)),
        ("rehash every frame, render any that do not match", resume_command(uri, verify=True)),
        ("frames done, missing and failed", status_command(uri)),
        ("the same, rehashing every frame", status_command(uri, verify=True)),
        ("build the outputs (all frames must be there)", assemble_command(uri)),
    ]
    if missing:
        commands.append(("preview the outputs from the frames done so far", assemble_command(uri, partial=True)))
    commands.append(("rebuild this report", report_command(uri)))
    return commands


# ---------------------------------------------------------------------------- reading the run


def _sizes(store: RunStore, names: Sequence[str]) -> dict[str, int]:
    """Sizes of the files among `names` that exist in the run (one metadata request each, retried).

    Raises:
        StoreError: storage kept failing.
    """
    infos = store.files.retry(
        "cannot look up the outputs", lambda: store.fs.get_file_info(list(map(store.files.path, names)))
    )
    return {n: i.size for n, i in zip(names, infos) if i.type == pafs.FileType.File}


def _summary(
    total: int, missing: list[int], failures: Mapping[int, Any], lock: Mapping[str, Any] | None, generated: str
) -> str:
    done = total - len(missing)
    stats = [
        (done, "done", "warn" if missing else "ok"),
        (len(missing), "missing", "bad" if missing else "ok"),
        (len(failures), "failed chunks", "bad" if failures else "ok"),
    ]
    out = [
        "<div class=stats>",
        *(f'<span class="stat {tone}"><b>{n}</b>{label}</span>' for n, label, tone in stats),
        "</div>",
        f"<p>{done} of {total} frames done, {len(missing)} missing"
        + (f" ({escape(frame_ranges(missing))})" if missing else "")
        + f", {len(failures)} failed chunk{'' if len(failures) == 1 else 's'}.</p>",
    ]
    if lock:
        age = time.time() - float(lock.get("heartbeat", 0))
        out.append(
            f"<p>When this report was written ({escape(generated)}), a driver held the run: host "
            f"{escape(lock.get('host'))}, pid {escape(lock.get('pid'))}, last heartbeat {age:.0f} s before.</p>"
        )
    return "".join(out)


def _outputs_section(store: RunStore, job: Job) -> str:
    names = job.output_files()
    if not names:
        return "<h2>Outputs</h2><p>The job asks for no outputs.</p>"
    # A final output, else its partial preview (raywalk.run.store keeps previews under preview/).
    sizes = _sizes(store, [n for name in names.values() for n in (name, preview_name(name))])
    parts, absent = [], []
    for kind, final in names.items():
        name = final if final in sizes else preview_name(final)
        if name not in sizes:
            absent.append(final)
            continue
        size = f"{sizes[name] / 1e6:.2f} MB"
        if sizes[name] > INLINE_LIMIT:
            parts.append(
                f'<figure><p><a href="{escape(name)}">{escape(name)}</a> ({size}, too large to embed): '
                f"{escape(store.url(name))}</p></figure>"
            )
            continue
        src = data_uri(_MIME[OUTPUT_SUFFIXES[kind][-4:]], store.read_bytes(name))
        if kind == "mp4":
            media = f'<video class=anim controls loop muted playsinline src="{src}"></video>'
        else:
            media = img(f"{kind} {name}", src, "out anim" if kind == "gif" else "out")
        partial = "" if name == final else " (PARTIAL: a preview of the frames done so far)"
        parts.append(f"<figure>{media}<figcaption>{escape(name)}, {size}{partial}</figcaption></figure>")
    note = f"<p>Not assembled yet: {escape(', '.join(absent))} (see the commands below).</p>" if absent else ""
    return f"<h2>Outputs</h2><div class=outputs>{''.join(parts)}</div>{note}"


def _failures_section(failures: Mapping[int, Mapping[str, Any]], index: Mapping[str, Sequence[Any]]) -> str:
    out = ["<h2>Failures and retries</h2>"]
    if failures:
        out.append(
            "<h3>Failed chunks</h3>"
            + html_table(
                ["chunk", "frames", "attempts", "reason"],
                [(c, f.get("frames", ""), f.get("attempts", ""), f.get("error", "")) for c, f in failures.items()],
                numeric=(0, 2),
            )
        )
    else:
        out.append("<p>No failed chunks.</p>")
    retried = retried_chunks(index)
    if retried:
        rows = sum(r for _, r in retried.values())
        out.append(
            f"<h3>Retries</h3><p>{rows} index row(s) come from a second or later attempt, "
            f"in {len(retried)} chunk(s).</p>"
            + html_table(["chunk", "attempt", "rows"], [(c, a, r) for c, (a, r) in retried.items()], (0, 1, 2))
        )
    else:
        out.append("<p>No retries: every indexed frame was rendered on its chunk's first attempt.</p>")
    listed = ", ".join(f"worker {short_id(w)}: {n}" for w, n in worker_restarts(index).items())
    out.append(
        f"<p>Workers seen on more than one node restarted at least: {listed}.</p>"
        if listed
        else "<p>No worker rendered on more than one node.</p>"
    )
    return "".join(out)


def _speed_section(index: Mapping[str, Sequence[Any]]) -> str:
    if not index["frame"]:
        return "<h2>Throughput</h2><p>No frames rendered yet.</p>"
    series = throughput(index)
    workers, nodes = worker_stats(index), node_stats(index)
    seconds = np.asarray(index["seconds"], dtype=float)
    how = (
        "wall-clock time from the index's <code>written</code> times"
        if series.clock == "written"
        else "each worker's cumulative render seconds (this index has no <code>written</code> column, so workers "
        "are drawn as if they had started together)"
    )
    stat_header = ["frames", "mean s", "median s", "p90 s", "render s"]

    def numbers(g: GroupStats) -> tuple[Any, ...]:
        return g.frames, secs(g.mean), secs(g.median), secs(g.p90), secs(g.seconds)

    return (
        "<h2>Throughput</h2>"
        + img("frames per minute over time, per worker and total", throughput_plot(series))
        + f"<p class=sub>Frames per minute in bins of {series.bin_seconds:.3g} s, on {how}.</p>"
        "<h2>Seconds per frame</h2>"
        f"<p>{secs(seconds.mean())} s per frame on average over {len(seconds)} index rows "
        f"({secs(seconds.sum())} render seconds on {len(workers)} worker(s), {len(nodes)} node(s)).</p>"
        + img("seconds per frame per worker", seconds_plot(index, workers))
        + "<h3>Per worker</h3>"
        + html_table(
            ["worker", "node", *stat_header],
            [(short_id(w.name), Html(", ".join(map(short_id, w.members))), *numbers(w)) for w in workers],
            numeric=range(2, 7),
        )
        + "<h3>Per node</h3>"
        + html_table(
            ["node", "workers", *stat_header],
            [(short_id(n.name), len(n.members), *numbers(n)) for n in nodes],
            numeric=range(1, 7),
        )
    )


def _walk_section(table: pa.Table, done: set[int], num_frames: int) -> str:
    columns = walk_parameters(table)
    if not columns or not done:
        return ""
    return (
        "<h2>Walk</h2>"
        + img("walk parameters against frame", walk_plot(table, columns, done, num_frames))
        + f"<p class=sub>The trajectory parameters the index records for each frame done "
        f"({escape(', '.join(columns))}).</p>"
    )


def _pacing_section(distances: np.ndarray | None, table: np.ndarray | None) -> str:
    """The neighbour distances of the finished frames (smoothness.parquet) and the walk table (timing.npy)."""
    if distances is None and table is None:
        return ""
    out = ["<h2>Pacing</h2>"]
    if distances is not None and len(distances):
        out.append(img("distance from each frame to the next", distances_plot(distances)))
        out.append(
            f"<p class=sub>Smoothness 1 − Gini = {smoothness(distances):.3f}, max/mean jump "
            f"{max_jump(distances):.2f} (dashed: the mean distance).</p>"
        )
    if table is not None:
        out.append(img("walk parameter u against frame", timing_plot(table)))
        out.append("<p class=sub>The pacing curve: the walk parameter each frame renders at (timing.npy).</p>")
    return "".join(out)


def _stacks_section(record: Manifest, counts: Mapping[str | None, int]) -> str:
    """Every stack the run was rendered with, and how many done frames carry each (`raywalk status` too)."""
    lines = stack_lines(record, dict(counts))
    if not lines:
        return ""
    return f"<h2>Model stacks</h2><pre>{escape(chr(10).join(lines))}</pre>"


def _job_section(job: Job, manifest: Mapping[str, Any]) -> str:
    m = job.model
    described = {
        part: ", ".join(f"{k} {v}" for k, v in manifest["job"][part].items() if k != "kind")
        for part in ("walk", "noise")
    }
    rows = [
        ("walk", f"{job.walk.kind}: {described['walk']}"),
        ("noise", f"{job.noise.kind}: {described['noise']}"),
        (
            "model",
            f"{m.renderer} {m.width}×{m.height}, {m.steps} steps, guidance {m.guidance_scale}, "
            f"weights {m.weights}, precision {m.precision}, batch {m.batch_size}"
            + (f", options {dict(m.options)}" if m.options else ""),
        ),
        ("chunks", f"{job.chunking.chunk_size} frames each, up to {job.chunking.max_attempts} attempts"),
        ("fingerprint", manifest.get("fingerprint", "")),
        ("raywalk", f"{manifest.get('raywalk', '')}, manifest updated {manifest.get('updated', '')}"),
    ]
    if manifest.get("renderer"):
        rows.append(("renderer", ", ".join(f"{k} {v}" for k, v in manifest["renderer"].items())))
    versions = ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items())
    prompts = "".join(f"<li>{escape(p)}</li>" for p in job.prompts)
    return (
        f"<h2>Job</h2><ol>{prompts}</ol><table>"
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
        + "</table>"
        + (
            f"<details><summary>package versions</summary><p><code>{escape(versions)}</code></p></details>"
            if versions
            else ""
        )
    )


def build_report(
    store: RunStore,
    releasing: str | None = None,
    index: pa.Table | None = None,
    done: np.ndarray | None = None,
    pictures: Sequence[ShownPicture] | None = None,
) -> str:
    """The report of the run in `store` as one HTML page (nothing is written). A lock whose token is
    `releasing` is left out: its driver writes this report last and then releases the run, so the page
    would state a lock that no longer exists. `index` (`store.read_index(run_id=...)` of the manifest's run)
    and `done` (`store.done_frames(num_frames, run_id)`) are read here unless the caller has read them.
    `pictures`, the job's pictures as the run holds them (read from the run unless given), get a section
    after the outputs.

    Raises:
        RunLocationError: the location holds no run.
        StoreError: the run cannot be read.
    """
    record = store.require_manifest()
    manifest = record.to_json()
    job = record.job
    total = record.num_frames
    # rows of earlier runs (--force) are not this run's
    table = store.read_index(run_id=record.run_id) if index is None else index
    done_mask = store.done_frames(total, record.run_id) if done is None else done
    done_set = set(np.flatnonzero(done_mask).tolist())
    missing = np.flatnonzero(~done_mask).tolist()
    failures = store.read_failures()
    wanted = ["frame", "chunk", "attempt", "node", "worker", "seconds", WRITTEN]
    columns = table.select([c for c in wanted if c in table.column_names]).to_pydict()
    uri = store.root if store.local else store.uri
    state = "complete" if not missing else f"{len(missing)} of {total} frames missing"
    banner = (
        "<div class=banner>RANDOM WEIGHTS: these frames come from an untrained model and are noise, "
        "not Stable Diffusion images.</div>"
        if manifest.get("random_weights")
        else ""
    )
    commands = "\n".join(f"# {what}\n{command}" for what, command in shell_commands(uri, bool(missing)))
    generated = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lock = store.read_lock() if missing else None  # the lock matters mid-run
    if lock is not None and releasing is not None and lock.get("token") == releasing:
        lock = None
    body = "".join(
        [
            f"<h1>{escape(job.name)}</h1><p class=sub>{escape(store.url())} · {escape(state)}</p>",
            banner,
            _summary(total, missing, failures, lock, generated),
            _outputs_section(store, job),
            pictures_section(shown_pictures(store, job) if pictures is None else pictures),
            _failures_section(failures, columns),
            _speed_section(columns),
            _walk_section(table, done_set, total),
            _pacing_section(store.read_smoothness(record.run_id), store.read_timing(record.timing_sha256)),
            _job_section(job, manifest),
            _stacks_section(record, frames_per_stack(latest_done_rows(table, done_mask))),
            f"<h2>Commands</h2><pre>{escape(commands)}</pre>",
            f"<footer>raywalk report of {escape(store.url())}, generated {escape(generated)} "
            "from its manifest and index.</footer>",
        ]
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{escape(job.name)}: raywalk report</title><style>{CSS}</style></head><body>{body}</body></html>"
    )


def write_report(
    store: RunStore,
    releasing: str | None = None,
    index: pa.Table | None = None,
    done: np.ndarray | None = None,
    pictures: Sequence[ShownPicture] | None = None,
) -> str:
    """Build the run's report and write it whole as `report.html` in the run (without the lock of token
    `releasing`, from `index` and `done` if already read, showing `pictures`: see `build_report`); returns
    its URL.

    Raises:
        RunLocationError: the location holds no run.
        StoreError: the run cannot be read or the report cannot be written.
    """
    store.write_bytes(REPORT, build_report(store, releasing, index, done, pictures).encode("utf-8"))
    return store.url(REPORT)
