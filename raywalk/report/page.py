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

import base64
import datetime
import html
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
from matplotlib.figure import Figure

from raywalk.core.commands import assemble_command, report_command, resume_command, status_command
from raywalk.core.pacing import max_jump, smoothness
from raywalk.core.spec import OUTPUT_SUFFIXES, Job
from raywalk.errors import StoreError, one_line
from raywalk.report.status import frames_per_stack, latest_done_rows, stack_lines
from raywalk.run.manifest import Manifest
from raywalk.run.state import IndexRead
from raywalk.run.store import INDEX_SCHEMA, RunStore, frame_ranges, preview_name

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

REPORT = "report.html"
INLINE_LIMIT = 8 << 20  # outputs up to this size are embedded; larger ones are linked
WRITTEN = "written"  # index column: UNIX seconds when the chunk's index was written
RESTARTS = "restarts"  # index column: how often the row's worker had restarted when it wrote the row
_NOT_PARAMETERS = {f.name for f in INDEX_SCHEMA} | {WRITTEN, RESTARTS}
_MIME = {".gif": "image/gif", ".mp4": "video/mp4", ".png": "image/png"}


# ---------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class Throughput:
    """Frames per minute in consecutive time bins, per worker and in total.

    `clock` says what the time axis is: "written" is wall-clock time since the
    first chunk began (from the index's `written` column); "seconds" is each
    worker's own cumulative render time (every worker starts at 0), for
    indexes that have no `written` column.
    """

    clock: str
    bin_seconds: float
    starts: np.ndarray  # bin starts, seconds
    workers: dict[str, np.ndarray]  # worker -> frames per minute in each bin
    total: np.ndarray


@dataclass(frozen=True)
class GroupStats:
    """Seconds per frame of one worker or node."""

    name: str
    frames: int
    mean: float
    median: float
    p90: float
    seconds: float  # render seconds in all
    members: tuple[str, ...]  # a worker's nodes, a node's workers


def completion_times(index: Mapping[str, Sequence[Any]]) -> tuple[str, dict[str, np.ndarray]]:
    """When each worker finished each of its frames: (clock, worker -> sorted seconds from the start).

    With a `written` column (all values present), a chunk's frames are spread
    over the render seconds before its index was written, and the start is when
    the earliest chunk began. Without it, each worker's rows are taken in chunk
    and frame order and placed at its cumulative render seconds.
    """
    workers, seconds = list(index["worker"]), np.asarray(index["seconds"], dtype=float)
    frames, chunks = np.asarray(index["frame"]), np.asarray(index["chunk"])
    written = index.get(WRITTEN)
    use_written = written is not None and len(written) > 0 and all(w is not None for w in written)
    times = np.empty(len(seconds))
    if use_written:
        stamps = np.asarray(written, dtype=float)
        groups: dict[tuple[int, float], list[int]] = {}
        for i in np.lexsort((frames, stamps, chunks)):
            groups.setdefault((int(chunks[i]), float(stamps[i])), []).append(int(i))
        starts = []
        for (_, stamp), rows in groups.items():
            starts.append(stamp - seconds[rows].sum())
            times[rows] = starts[-1] + np.cumsum(seconds[rows])
        times -= min(starts)
    else:
        by_worker: dict[str, list[int]] = {}
        for i in np.lexsort((frames, chunks)):
            by_worker.setdefault(workers[i], []).append(int(i))
        for rows in by_worker.values():
            times[rows] = np.cumsum(seconds[rows])
    result: dict[str, list[float]] = {}
    for worker, t in zip(workers, times):
        result.setdefault(worker, []).append(float(t))
    return ("written" if use_written else "seconds"), {w: np.sort(t) for w, t in sorted(result.items())}


def throughput(index: Mapping[str, Sequence[Any]], bins: int | None = None) -> Throughput:
    """Frames per minute over time, per worker and in total (see `completion_times` for the clock).

    The time from 0 to the last frame is cut into `bins` equal bins, so no bin
    is partial; the default, one bin per 20 rows (4 to 60), keeps each bin's
    count large enough that a frame more or less does not look like a change
    of speed.
    """
    clock, times = completion_times(index)
    rows = sum(len(t) for t in times.values())
    if not rows:
        return Throughput(clock, 0.0, np.zeros(0), {}, np.zeros(0))
    bins = bins or min(60, max(4, rows // 20))
    width = max(max(float(t[-1]) for t in times.values()), 1e-6) / bins
    per_worker = {
        w: np.bincount(np.clip(np.ceil(t / width).astype(int) - 1, 0, bins - 1), minlength=bins) * (60 / width)
        for w, t in times.items()
    }
    return Throughput(clock, width, np.arange(bins) * width, per_worker, np.sum(list(per_worker.values()), axis=0))


def _group_stats(index: Mapping[str, Sequence[Any]], key: str, other: str) -> list[GroupStats]:
    seconds: dict[str, list[float]] = {}
    members: dict[str, set[str]] = {}
    for k, o, s in zip(index[key], index[other], index["seconds"]):
        seconds.setdefault(k, []).append(s)
        members.setdefault(k, set()).add(o)
    return [
        GroupStats(
            k,
            len(s),
            float(np.mean(s)),
            float(np.median(s)),
            float(np.percentile(s, 90)),
            float(np.sum(s)),
            tuple(sorted(members[k])),
        )
        for k, s in sorted(seconds.items())
    ]


def worker_stats(index: Mapping[str, Sequence[Any]]) -> list[GroupStats]:
    """Seconds per frame of each worker (members: the nodes it rendered on), by worker id."""
    return _group_stats(index, "worker", "node")


def node_stats(index: Mapping[str, Sequence[Any]]) -> list[GroupStats]:
    """Seconds per frame of each node (members: the workers that rendered there), by node id."""
    return _group_stats(index, "node", "worker")


def retried_chunks(index: Mapping[str, Sequence[Any]]) -> dict[int, tuple[int, int]]:
    """Chunks whose rows came from a later attempt: chunk -> (highest attempt, rows from attempts > 1)."""
    retried: dict[int, tuple[int, int]] = {}
    for chunk, attempt in zip(index["chunk"], index["attempt"]):
        if attempt > 1:
            top, rows = retried.get(chunk, (1, 0))
            retried[chunk] = (max(top, attempt), rows + 1)
    return dict(sorted(retried.items()))


def worker_restarts(index: Mapping[str, Sequence[Any]]) -> tuple[bool, dict[str, int]]:
    """(recorded, worker -> restarts) for workers that restarted.

    With a `restarts` column the counts are recorded ones (the highest per
    worker). Without it they are a lower bound: a worker (a Ray actor, whose id
    survives restarts) seen on n nodes restarted at least n - 1 times.
    """
    recorded = RESTARTS in index
    counts: dict[str, int] = {}
    if recorded:
        for worker, n in zip(index["worker"], index[RESTARTS]):
            counts[worker] = max(counts.get(worker, 0), int(n or 0))
    else:
        for stats in worker_stats(index):
            counts[stats.name] = len(stats.members) - 1
    return recorded, {w: n for w, n in sorted(counts.items()) if n}


def walk_parameters(table: pa.Table) -> list[str]:
    """The index's numeric trajectory-parameter columns (`t`, `segment`, `row`, `theta`, ...), in order."""
    return [
        f.name
        for f in table.schema
        if f.name not in _NOT_PARAMETERS and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
    ]


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
    """Sizes of the files among `names` that exist in the run (one metadata request each)."""
    try:
        infos = store.fs.get_file_info([f"{store.root}/{n}" for n in names])
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{store.uri}: cannot look up the outputs: {one_line(exc)}") from None
    return {n: i.size for n, i in zip(names, infos) if i.type == pafs.FileType.File}


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# ---------------------------------------------------------------------------- plots

# Text stays text in the SVG (smaller, crisp); ids are stable from one report to the next.
_PLOT_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "raywalk",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def _figure(height: float) -> Figure:
    # A bare Figure, not pyplot: no global backend is chosen or changed in the
    # caller's process; savefig(format="svg") draws with matplotlib's SVG backend.
    return Figure(figsize=(8, height), layout="constrained")


def _svg_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return _data_uri("image/svg+xml", buf.getvalue())


def _short(name: str) -> str:
    return name[:8] if len(name) > 12 else name


def _throughput_plot(series: Throughput) -> str:
    with matplotlib.rc_context(_PLOT_RC):
        fig = _figure(3.2)
        ax = fig.add_subplot()
        edges = np.append(series.starts, series.starts[-1] + series.bin_seconds)
        minutes = series.clock == "written" and edges[-1] > 300
        x = edges / 60 if minutes else edges
        for i, (worker, rates) in enumerate(series.workers.items()):
            label = f"worker {_short(worker)}" if i < 8 else None  # 8 names at most: a legend, not a wall
            ax.stairs(rates, x, baseline=None, linewidth=1, alpha=0.8, label=label)
        if len(series.workers) > 1:
            ax.stairs(series.total, x, baseline=None, color="black", linewidth=2, label="total")
        unit = "minutes" if minutes else "seconds"
        ax.set_xlabel(
            f"{unit} since the first chunk began"
            if series.clock == "written"
            else f"render {unit} of each worker (the index records no wall-clock times)"
        )
        ax.set_ylabel("frames per minute")
        ax.set_ylim(bottom=0)
        fig.legend(loc="outside upper right", fontsize=8, ncols=5, frameon=False)
        return _svg_uri(fig)


def _seconds_plot(index: Mapping[str, Sequence[Any]], stats: list[GroupStats]) -> str:
    with matplotlib.rc_context(_PLOT_RC):
        fig = _figure(0.8 + 0.35 * len(stats))
        ax = fig.add_subplot()
        by_worker: dict[str, list[float]] = {}
        for worker, s in zip(index["worker"], index["seconds"]):
            by_worker.setdefault(worker, []).append(s)
        ax.boxplot(
            [by_worker[s.name] for s in stats],
            orientation="horizontal",
            widths=0.6,
            tick_labels=[f"{_short(s.name)} @ {', '.join(map(_short, s.members))}" for s in stats],
        )
        ax.invert_yaxis()
        ax.set_xlabel("seconds per frame (box: quartiles, line: median)")
        ax.set_xlim(0, 1.1 * max(max(v) for v in by_worker.values()) or 1.0)
        return _svg_uri(fig)


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """Sorted frames as (first, last) of each run of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


def _walk_plot(table: pa.Table, columns: list[str], done: set[int], num_frames: int) -> str:
    data = table.select(["frame", *columns]).to_pydict()
    first: dict[int, int] = {}
    for i, frame in enumerate(data["frame"]):
        if frame in done:
            first.setdefault(frame, i)
    frames = sorted(first)
    with matplotlib.rc_context(_PLOT_RC):
        fig = _figure(0.6 + 1.3 * len(columns))
        axes = fig.subplots(len(columns), 1, sharex=True, squeeze=False)[:, 0]
        gaps = _runs([f for f in range(num_frames) if f not in first])
        cuts = np.flatnonzero(np.diff(frames) > 1) + 1  # a NaN there: no line across frames not done
        x = np.insert(np.asarray(frames, dtype=float), cuts, np.nan)
        for ax, column in zip(axes, columns):
            y = np.insert(np.array([data[column][first[f]] for f in frames], dtype=float), cuts, np.nan)
            ax.plot(x, y, ".-" if len(frames) <= 200 else "-", markersize=3, linewidth=1)
            ax.set_ylabel(column)
            for lo, hi in gaps:
                ax.axvspan(lo - 0.5, hi + 0.5, color="tab:red", alpha=0.15, linewidth=0)
        axes[-1].set_xlabel("frame" + (" (red: not done)" if gaps else ""))
        axes[-1].set_xlim(-0.5, num_frames - 0.5)
        return _svg_uri(fig)


# ---------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:980px;
padding:16px 24px 48px;color:#1d1d1f;background:#fff}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#666}
.banner{background:#b00020;color:#fff;font-weight:700;padding:10px 14px;border-radius:6px;margin:12px 0}
.stats{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0 4px}.stat{border:1px solid #ddd;border-radius:8px;
padding:6px 14px}.stat b{font-size:22px;margin-right:6px}.ok b{color:#1a7f37}.warn b{color:#b35900}.bad b{color:#b00020}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #eee;padding:3px 12px 3px 0;text-align:left;
vertical-align:top}th{color:#555;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre,abbr{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}abbr{text-decoration:none}
pre{background:#f6f8fa;padding:10px 12px;border-radius:6px;overflow-x:auto}
.outputs{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}figure{margin:0}
figcaption{color:#666;font-size:12px}img.out,video{max-width:100%;border:1px solid #ddd}
.anim{min-width:256px;image-rendering:pixelated}img.plot{width:100%;height:auto}ol{padding-left:22px}
footer{margin-top:32px;color:#888;font-size:12px}
"""


class _Html(str):
    """Text that is already HTML (a table cell `_table` must not escape)."""


def _e(value: Any) -> str:
    return value if isinstance(value, _Html) else html.escape(str(value))


def _id(name: str) -> _Html:
    """A worker or node id, shortened, the whole id in its tooltip."""
    return _Html(f'<abbr title="{_e(name)}">{_e(_short(name))}</abbr>')


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td class=n>{_e(v)}</td>" if i in numeric else f"<td>{_e(v)}</td>" for i, v in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _secs(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def _img(alt: str, src: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{_e(alt)}" src="{src}">'


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
        + (f" ({_e(frame_ranges(missing))})" if missing else "")
        + f", {len(failures)} failed chunk{'' if len(failures) == 1 else 's'}.</p>",
    ]
    if lock:
        age = time.time() - float(lock.get("heartbeat", 0))
        out.append(
            f"<p>When this report was written ({_e(generated)}), a driver held the run: host "
            f"{_e(lock.get('host'))}, pid {_e(lock.get('pid'))}, last heartbeat {age:.0f} s before.</p>"
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
                f'<figure><p><a href="{_e(name)}">{_e(name)}</a> ({size}, too large to embed): '
                f"{_e(store.url(name))}</p></figure>"
            )
            continue
        src = _data_uri(_MIME[OUTPUT_SUFFIXES[kind][-4:]], store.read_bytes(name))
        if kind == "mp4":
            media = f'<video class=anim controls loop muted playsinline src="{src}"></video>'
        else:
            media = _img(f"{kind} {name}", src, "out anim" if kind == "gif" else "out")
        partial = "" if name == final else " (PARTIAL: a preview of the frames done so far)"
        parts.append(f"<figure>{media}<figcaption>{_e(name)}, {size}{partial}</figcaption></figure>")
    note = f"<p>Not assembled yet: {_e(', '.join(absent))} (see the commands below).</p>" if absent else ""
    return f"<h2>Outputs</h2><div class=outputs>{''.join(parts)}</div>{note}"


def _failures_section(failures: Mapping[int, Mapping[str, Any]], index: Mapping[str, Sequence[Any]]) -> str:
    out = ["<h2>Failures and retries</h2>"]
    if failures:
        out.append(
            "<h3>Failed chunks</h3>"
            + _table(
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
            + _table(["chunk", "attempt", "rows"], [(c, a, r) for c, (a, r) in retried.items()], (0, 1, 2))
        )
    else:
        out.append("<p>No retries: every indexed frame was rendered on its chunk's first attempt.</p>")
    recorded, restarts = worker_restarts(index)
    listed = ", ".join(f"worker {_id(w)}: {n}" for w, n in restarts.items())
    if recorded:
        out.append(f"<p>Worker restarts: {listed or 'none'}.</p>")
    else:
        out.append(
            "<p>Worker restarts are not recorded in this run's index; "
            + (
                f"workers seen on more than one node restarted at least: {listed}.</p>"
                if listed
                else "no worker rendered on more than one node.</p>"
            )
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
        return g.frames, _secs(g.mean), _secs(g.median), _secs(g.p90), _secs(g.seconds)

    return (
        "<h2>Throughput</h2>"
        + _img("frames per minute over time, per worker and total", _throughput_plot(series))
        + f"<p class=sub>Frames per minute in bins of {series.bin_seconds:.3g} s, on {how}.</p>"
        "<h2>Seconds per frame</h2>"
        f"<p>{_secs(seconds.mean())} s per frame on average over {len(seconds)} index rows "
        f"({_secs(seconds.sum())} render seconds on {len(workers)} worker(s), {len(nodes)} node(s)).</p>"
        + _img("seconds per frame per worker", _seconds_plot(index, workers))
        + "<h3>Per worker</h3>"
        + _table(
            ["worker", "node", *stat_header],
            [(_id(w.name), _Html(", ".join(map(_id, w.members))), *numbers(w)) for w in workers],
            numeric=range(2, 7),
        )
        + "<h3>Per node</h3>"
        + _table(
            ["node", "workers", *stat_header],
            [(_id(n.name), len(n.members), *numbers(n)) for n in nodes],
            numeric=range(1, 7),
        )
    )


def _walk_section(table: pa.Table, done: set[int], num_frames: int) -> str:
    columns = walk_parameters(table)
    if not columns or not done:
        return ""
    return (
        "<h2>Walk</h2>"
        + _img("walk parameters against frame", _walk_plot(table, columns, done, num_frames))
        + f"<p class=sub>The trajectory parameters the index records for each frame done "
        f"({_e(', '.join(columns))}).</p>"
    )


def _pacing_section(distances: np.ndarray | None, table: np.ndarray | None) -> str:
    """The neighbour distances of the finished frames (smoothness.parquet) and the walk table (timing.npy)."""
    if distances is None and table is None:
        return ""
    out = ["<h2>Pacing</h2>"]
    with matplotlib.rc_context(_PLOT_RC):
        if distances is not None and len(distances):
            fig = _figure(2.4)
            ax = fig.add_subplot()
            ax.plot(np.arange(len(distances)), distances, ".-" if len(distances) <= 200 else "-", linewidth=1)
            ax.axhline(float(distances.mean()), color="tab:gray", linewidth=0.8, linestyle="--")
            ax.set_xlabel("frame")
            ax.set_ylabel("distance to next")
            out.append(_img("distance from each frame to the next", _svg_uri(fig)))
            out.append(
                f"<p class=sub>Smoothness 1 − Gini = {smoothness(distances):.3f}, max/mean jump "
                f"{max_jump(distances):.2f} (dashed: the mean distance).</p>"
            )
        if table is not None:
            fig = _figure(2.4)
            ax = fig.add_subplot()
            ax.plot(np.arange(len(table)), table, "-", linewidth=1)
            ax.set_xlabel("frame")
            ax.set_ylabel("walk parameter u")
            out.append(_img("walk parameter u against frame", _svg_uri(fig)))
            out.append("<p class=sub>The pacing curve: the walk parameter each frame renders at (timing.npy).</p>")
    return "".join(out)


def _stacks_section(record: Manifest, counts: Mapping[str | None, int]) -> str:
    """Every stack the run was rendered with, and how many done frames carry each (`raywalk status` too)."""
    lines = stack_lines(record, dict(counts))
    if not lines:
        return ""
    return f"<h2>Model stacks</h2><pre>{_e(chr(10).join(lines))}</pre>"


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
    prompts = "".join(f"<li>{_e(p)}</li>" for p in job.prompts)
    return (
        f"<h2>Job</h2><ol>{prompts}</ol><table>"
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        + "</table>"
        + (
            f"<details><summary>package versions</summary><p><code>{_e(versions)}</code></p></details>"
            if versions
            else ""
        )
    )


def build_report(store: RunStore, releasing: str | None = None, index_read: IndexRead | None = None) -> str:
    """The report of the run in `store` as one HTML page (nothing is written). A lock whose token is
    `releasing` is left out: its driver writes this report last and then releases the run, so the page
    would state a lock that no longer exists. `index_read`: the caller's current read of the run's index (else it
    is read here).

    Raises:
        RunLocationError: the location holds no run.
        StoreError: the run cannot be read.
    """
    record = store.require_manifest()
    manifest = record.to_json()
    job = record.job
    total = record.num_frames
    if index_read is None or index_read.run_id != record.run_id:
        table = store.read_index(run_id=record.run_id)  # rows of earlier runs (--force) are not this run's
        done_mask = store.done_frames(total, record.run_id)
    else:
        table, done_mask = index_read.rows, index_read.done
    done = set(np.flatnonzero(done_mask).tolist())
    missing = np.flatnonzero(~done_mask).tolist()
    failures = store.read_failures()
    wanted = ["frame", "chunk", "attempt", "node", "worker", "seconds", WRITTEN, RESTARTS]
    index = table.select([c for c in wanted if c in table.column_names]).to_pydict()
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
            f"<h1>{_e(job.name)}</h1><p class=sub>{_e(store.url())} · {_e(state)}</p>",
            banner,
            _summary(total, missing, failures, lock, generated),
            _outputs_section(store, job),
            _failures_section(failures, index),
            _speed_section(index),
            _walk_section(table, done, total),
            _pacing_section(store.read_smoothness(record.run_id), store.read_timing(record.timing_sha256)),
            _job_section(job, manifest),
            _stacks_section(record, frames_per_stack(latest_done_rows(table, done_mask))),
            f"<h2>Commands</h2><pre>{_e(commands)}</pre>",
            f"<footer>raywalk report of {_e(store.url())}, generated {_e(generated)} "
            "from its manifest and index.</footer>",
        ]
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{_e(job.name)}: raywalk report</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )


def write_report(store: RunStore, releasing: str | None = None, index_read: IndexRead | None = None) -> str:
    """Build the run's report and write it whole as `report.html` in the run (without the lock of token
    `releasing`, see `build_report`; `index_read`: the caller's current read of the run's index); returns its URL.

    Raises:
        RunLocationError: the location holds no run.
        StoreError: the run cannot be read or the report cannot be written.
    """
    store.write_bytes(REPORT, build_report(store, releasing, index_read).encode("utf-8"))
    return store.url(REPORT)
