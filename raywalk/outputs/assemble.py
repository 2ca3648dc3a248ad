"""Outputs of a run (GIF, MP4, grid image, contact sheet), streamed in frame order.

Frames are read from the run one at a time, in index order whatever order
they were rendered in, by a small pool of threads that decodes a few frames
ahead; nothing holds more than a handful of images, so a 20,000-frame run
assembles in the memory of a 20-frame one. Outputs are published through the
store (temporary name, then moved into place, then recorded with their size,
SHA-256 and run id), so a reader never sees half an animation under a final
name. Partial outputs (previews, `raywalk assemble --partial`) go under
`preview/` and say PARTIAL in their metadata; final names are written only when
every frame is there.

A timed walk's MP4 carries the run's copy of its soundtrack, cut to exactly
the frames assembled (`raywalk.outputs.soundtrack.mux`); a preview's MP4 then holds
only the leading consecutive frames, so that picture and sound stay in step.
The GIF stays silent. A complete run's neighbour distances
(`raywalk.core.pacing.distances`) are published as smoothness.parquet.

Every complete assembly also publishes frames.parquet, the newest index row
of each frame, from the same read of the index that checks the frames, and
moves the index files found damaged to damaged/ (every frame is done again
without them), so that readers of index/ see only whole files.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import struct
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import GifImagePlugin, Image, ImageDraw, ImageFont, PngImagePlugin

from raywalk.core.commands import resume_command
from raywalk.core.pacing import distances
from raywalk.core.spec import OUTPUT_SUFFIXES, Job
from raywalk.errors import AssembleError
from raywalk.outputs.soundtrack import mux
from raywalk.run.state import IndexRead
from raywalk.run.store import (
    FRAMES,
    FRAMES_TABLE,
    SMOOTHNESS,
    RunStore,
    frame_name,
    frame_ranges,
    preview_name,
    soundtrack_name,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_THREADS = min(4, os.cpu_count() or 1)
_AHEAD = 2 * _THREADS  # frames in flight: the memory bound


class MissingFramesError(AssembleError):
    """The run lacks frames and partial assembly was not asked for."""

    def __init__(self, message: str, missing: list[int], num_frames: int):
        super().__init__(message)
        self.missing = missing
        self.num_frames = num_frames


def ping_pong(frames: list[int]) -> list[int]:
    """Forward, then backward repeating neither end: 0..N-1, N-2..1."""
    return frames + frames[-2:0:-1]


def available_frames(
    store: RunStore, num_frames: int, run_id: str, partial: bool = False, done: np.ndarray | None = None
) -> list[int]:
    """Done frames of run `run_id` among 0..num_frames-1 in order (`done`: the caller's read of them);
    MissingFramesError if any lack, unless `partial`."""
    return _available(store, store.done_frames(num_frames, run_id) if done is None else done, partial)


def _available(store: RunStore, done: np.ndarray, partial: bool) -> list[int]:
    """The frames `done` marks, in order; MissingFramesError if any lack, unless `partial`."""
    num_frames = len(done)
    frames = np.flatnonzero(done).tolist()
    if len(frames) < num_frames:
        missing = np.flatnonzero(~done).tolist()
        message = (
            f"{len(missing)} of {num_frames} frames missing ({frame_ranges(missing)}): "
            f"run `{resume_command(store.uri)}`"
        )
        if not partial:
            raise MissingFramesError(message, missing, num_frames)
        log.warning("partial outputs, %s", message)
    if not frames:
        raise AssembleError(f"{store.uri}: no frames rendered yet")
    return frames


def _target(
    store: RunStore,
    num_frames: int,
    name: str,
    partial: bool,
    note: str = "",
    run_id: str | None = None,
    frames_table: bool = False,
    index: IndexRead | None = None,
) -> tuple[list[int], str, str | None, str]:
    """(frames, where to write, run id to record or None, note) for output `name`.

    The run is checked once: without `partial`, every frame must be there and
    the output goes under its final name, recorded for the run (and, with
    `frames_table`, frames.parquet is published from the same read of the
    index: `publish_frames_table`); with it, the output is a preview under
    preview/, unrecorded, whose note says PARTIAL. `index`: the caller's read of the index, if current.
    """
    run_id = store.require_manifest().run_id if run_id is None else run_id
    if frames_table and not partial:
        done, rows = store.frame_rows(num_frames, run_id) if index is None else (index.done, index.newest_rows())
        frames = _available(store, done, partial)
        _publish_rows(store, rows, run_id)
    else:
        frames = _available(store, store.done_frames(num_frames, run_id) if index is None else index.done, partial)
    if not partial:
        return frames, name, run_id, note
    marker = f"PARTIAL: {len(frames)} of {num_frames} frames"
    return frames, preview_name(name), None, f"{marker}; {note}" if note else marker


def _load(store: RunStore, frame: int, header_only: bool = False) -> Image.Image:
    where = store.url(f"{FRAMES}/{frame_name(frame)}")
    try:
        data = store.read_frame(frame)
    except FileNotFoundError:
        raise AssembleError(f"frame {frame}: {where} has disappeared") from None
    try:
        im = Image.open(io.BytesIO(data))
        return im if header_only else im.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise AssembleError(f"frame {frame}: cannot read {where}: {' '.join(str(exc).split())}") from None


def _ordered(fn: Callable[[int], T], items: Iterable[int]) -> Iterator[T]:
    """`map(fn, items)` on a thread pool, in order, with at most _AHEAD results pending."""
    pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="raywalk-assemble")
    pending: deque[Future[T]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= _AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _frame_size(store: RunStore, frame: int) -> tuple[int, int]:
    """(width, height) of a frame, from its PNG header; every output frame is fitted to it."""
    return _load(store, frame, header_only=True).size


def _fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)


# ---------------------------------------------------------------------------- GIF
#
# Pillow's `save(save_all=True, append_images=...)` needs every frame at once
# (it collects them all to diff neighbours before writing), which is the
# tutorial's memory problem. A GIF is a header, then self-contained frames,
# then a trailer, so the writer below emits each frame as soon as it is
# encoded: Pillow quantises it to its own palette and `GifImagePlugin.getdata`
# LZW-encodes it with that local colour table and a graphic control extension
# carrying the duration.


def _gif_header(size: tuple[int, int]) -> bytes:
    """GIF89a, no global colour table, NETSCAPE2.0 extension looping forever."""
    screen = b"GIF89a" + struct.pack("<HHBBB", size[0], size[1], 0, 0, 0)
    loop = b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"
    return screen + loop


def _gif_frame(im: Image.Image, duration_ms: int) -> bytes:
    # The palette is Pillow's median cut (what `save` uses) computed on a
    # quarter-size copy, then every pixel is mapped to it: on 512×512 frames
    # that is several times faster than median cut over all pixels, for a mean
    # colour error about 1% higher (bench/assemble.py measures both).
    sample = im.reduce(4) if min(im.size) >= 256 else im
    palette = sample.quantize(256, method=Image.Quantize.MEDIANCUT)
    paletted = im.quantize(palette=palette, dither=Image.Dither.NONE)
    return b"".join(GifImagePlugin.getdata(paletted, duration=duration_ms, include_color_table=True))


def _gif_comment(note: str) -> bytes:
    """A GIF comment extension holding `note` (sub-blocks of at most 255 bytes)."""
    data = note.encode("utf-8")
    blocks = b"".join(bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255))
    return b"!\xfe" + blocks + b"\x00"


def _gif(
    store: RunStore,
    frames: list[int],
    name: str,
    *,
    fps: int,
    rubber_band: bool,
    resize: Sequence[int] | None,
    note: str = "",
    run_id: str | None = None,
) -> str:
    size = (resize[0], resize[1]) if resize else _frame_size(store, frames[0])
    duration = 1000 // fps
    with store.local_output(name, run_id) as path, open(path, "wb") as out:
        out.write(_gif_header(size))
        if note:
            out.write(_gif_comment(note))
        for data in _ordered(
            lambda f: _gif_frame(_fit(_load(store, f), size), duration), ping_pong(frames) if rubber_band else frames
        ):
            out.write(data)
        out.write(b";")
    return store.url(name)


def write_gif(
    store: RunStore,
    num_frames: int,
    name: str,
    fps: int = 10,
    rubber_band: bool = False,
    resize: Sequence[int] | None = None,
    partial: bool = False,
) -> str:
    """Animated GIF `name` of frames 0..num_frames-1, looping forever, `1000 // fps` ms a frame.

    `resize` is [width, height]. With `partial`, a preview of the frames done
    so far (preview/`name`). Returns where it was written.
    """
    frames, name, run_id, note = _target(store, num_frames, name, partial)
    return _gif(store, frames, name, fps=fps, rubber_band=rubber_band, resize=resize, note=note, run_id=run_id)


# ---------------------------------------------------------------------------- MP4


def _mp4(
    store: RunStore,
    frames: list[int],
    name: str,
    *,
    fps: int,
    rubber_band: bool,
    quality: float,
    note: str = "",
    run_id: str | None = None,
    soundtrack: str | None = None,
) -> str:
    """With `soundtrack` (the run's copy), the video of `frames` (consecutive from 0) muxed with its audio."""
    with store.local_output(name, run_id) as path:
        if soundtrack is None:
            _encode_mp4(store, frames, path, fps=fps, rubber_band=rubber_band, quality=quality, note=note)
        else:
            with tempfile.TemporaryDirectory(prefix="raywalk-") as tmp, store.local_file(soundtrack) as audio:
                video = os.path.join(tmp, "video.mp4")
                _encode_mp4(store, frames, video, fps=fps, rubber_band=rubber_band, quality=quality, note=note)
                mux(video, audio, path, fps, first_frame=0, num_frames=len(frames))
    return store.url(name)


def _encode_mp4(
    store: RunStore, frames: list[int], path: str, *, fps: int, rubber_band: bool, quality: float, note: str
) -> None:
    # quality 0..10 as imageio-ffmpeg means it (10 best), mapped to x264's CRF
    # here because imageio-ffmpeg refuses 0.
    crf = round((1 - quality / 10) * 51)
    size = _frame_size(store, frames[0])
    writer = imageio_ffmpeg.write_frames(
        path,
        size,
        fps=fps,
        codec="libx264",
        quality=None,
        macro_block_size=2,  # yuv420p needs even sides; x264 needs no more
        output_params=["-crf", str(crf), "-movflags", "+faststart", "-metadata", f"comment={note}"],
    )
    writer.send(None)
    try:
        for im in _ordered(lambda f: _fit(_load(store, f), size), ping_pong(frames) if rubber_band else frames):
            writer.send(np.asarray(im))
    finally:
        writer.close()


def write_mp4(
    store: RunStore,
    num_frames: int,
    name: str,
    fps: int = 24,
    rubber_band: bool = False,
    quality: float = 8,
    partial: bool = False,
) -> str:
    """H.264 MP4 `name` (imageio-ffmpeg's bundled ffmpeg); `quality` 0..10, 10 best; `partial` as for GIFs."""
    frames, name, run_id, note = _target(store, num_frames, name, partial)
    return _mp4(store, frames, name, fps=fps, rubber_band=rubber_band, quality=quality, note=note, run_id=run_id)


# ---------------------------------------------------------------------------- grid, contact sheet


def _grid(store: RunStore, frames: list[int], name: str, *, n: int, note: str = "", run_id: str | None = None) -> str:
    tiles = [f for f in frames if f < n * n]
    w, h = _frame_size(store, tiles[0])
    canvas = Image.new("RGB", (n * w, n * h))
    for frame, im in zip(tiles, _ordered(lambda f: _fit(_load(store, f), (w, h)), tiles)):
        row, col = divmod(frame, n)
        canvas.paste(im, (col * w, row * h))
    return _save_png(store, canvas, name, note, run_id)


def write_grid(store: RunStore, n: int, name: str, partial: bool = False) -> str:
    """n×n image of frames 0..n²-1, row-major like the tutorial's plot_grid (frame k at row k//n)."""
    frames, name, run_id, note = _target(store, n * n, name, partial)
    return _grid(store, frames, name, n=n, note=note, run_id=run_id)


def _contact_sheet(
    store: RunStore,
    frames: list[int],
    name: str,
    *,
    every: int,
    columns: int,
    tile: int,
    note: str = "",
    run_id: str | None = None,
) -> str:
    picked = [f for f in frames if f % every == 0] or frames[:1]
    width, height = _frame_size(store, picked[0])
    size = (tile, max(1, round(tile * height / width)))
    rows = -(-len(picked) // columns)
    canvas = Image.new("RGB", (columns * size[0], rows * size[1]))
    font = ImageFont.load_default(size=max(12, tile // 8))
    for i, (frame, thumb) in enumerate(zip(picked, _ordered(lambda f: _fit(_load(store, f), size), picked))):
        draw = ImageDraw.Draw(thumb)
        box = draw.textbbox((3, 2), str(frame), font=font)
        draw.rectangle((0, 0, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        draw.text((3, 2), str(frame), font=font, fill=(255, 255, 255))
        row, col = divmod(i, columns)
        canvas.paste(thumb, (col * size[0], row * size[1]))
    return _save_png(store, canvas, name, note, run_id)


def write_contact_sheet(
    store: RunStore,
    num_frames: int,
    name: str,
    every: int = 10,
    columns: int = 8,
    tile: int = 128,
    partial: bool = False,
) -> str:
    """Every `every`-th frame as a `tile`-pixel-wide thumbnail labelled with its number."""
    frames, name, run_id, note = _target(store, num_frames, name, partial)
    return _contact_sheet(store, frames, name, every=every, columns=columns, tile=tile, note=note, run_id=run_id)


def _save_png(store: RunStore, image: Image.Image, name: str, note: str, run_id: str | None) -> str:
    info = PngImagePlugin.PngInfo()
    if note:
        info.add_text("Comment", note)
    buf = io.BytesIO()
    image.save(buf, "PNG", pnginfo=info)
    store.write_output(name, buf.getbuffer(), run_id)
    return store.url(name)


# ---------------------------------------------------------------------------- entry point

# kind -> (the public function, whose signature holds the option defaults; the builder)
_KINDS: dict[str, tuple[Callable[..., str], Callable[..., str]]] = {
    "gif": (write_gif, _gif),
    "mp4": (write_mp4, _mp4),
    "grid": (write_grid, _grid),
    "contact_sheet": (write_contact_sheet, _contact_sheet),
}


def _options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    parameters = inspect.signature(_KINDS[kind][0]).parameters.items()
    defaults = {p: v.default for p, v in parameters if v.default is not v.empty and p != "partial"}
    unknown = set(options) - set(defaults)
    if unknown:
        raise ValueError(f"outputs.{kind}: unknown options {', '.join(sorted(unknown))}")
    return {**defaults, **options}


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
    index: IndexRead | None = None,
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
    consecutive frames only (a preview without frame 0 has no MP4). `index`: the caller's read of the index of
    run `run_id`, if current (else it is read here).
    """
    unknown = set(outputs) - set(_KINDS)
    if unknown:
        raise ValueError(f"unknown output kinds: {', '.join(sorted(unknown))}")
    if "grid" in outputs and not grid_size:
        raise ValueError("a grid output needs grid_size")
    options = {kind: _options(kind, opts) for kind, opts in outputs.items()}
    if "grid" in options:
        options["grid"]["n"] = grid_size
    frames, prefix, run_id, note = _target(store, num_frames, "", partial, note, run_id, frames_table=True, index=index)
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
        built.append(_KINDS[kind][1](store, picked, name, note=note, run_id=run_id, **opts))
    return built


def assemble_job(store: RunStore, job: Job, partial: bool = False, index: IndexRead | None = None) -> list[str]:
    """The outputs a validated job asks for (what `render` runs at the end), each saying how it was made
    (`index`: the caller's current read of the run's index, if it holds one)."""
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
        index=index,
    )


def _publish_rows(store: RunStore, rows: pa.Table, run_id: str) -> str:
    """Move the index files the read of `rows` found damaged to damaged/, then publish `rows` (`frame_rows`'
    table of complete run `run_id`) as frames.parquet; returns where."""
    for name in store.move_damaged():
        log.warning(
            "%s: a damaged index file, moved out of index/ (every frame is done again without it)", store.url(name)
        )
    return store.write_frames_table(rows, run_id)


def publish_frames_table(store: RunStore, num_frames: int, run_id: str, index: IndexRead | None = None) -> str | None:
    """Publish frames.parquet, one row per frame (its newest index row), if run `run_id` is complete, after
    moving the index files found damaged to damaged/; returns where, or None (frames missing: nothing done).
    `index`: the caller's current read of the run's index (else it is read here)."""
    done, rows = store.frame_rows(num_frames, run_id) if index is None else (index.done, index.newest_rows())
    return _publish_rows(store, rows, run_id) if done.all() else None


def write_smoothness(store: RunStore, num_frames: int, run_id: str, done: np.ndarray | None = None) -> str:
    """Publish smoothness.parquet for complete run `run_id`: (frame, distance_to_next) for frames 0..N-2, the
    `raywalk.core.pacing.distances` of the frames in order, decoded a few at a time; returns where. `done`: the
    caller's read of the done frames (else the index is read here).

    Raises:
        MissingFramesError: the run lacks frames.
    """
    frames = available_frames(store, num_frames, run_id, done=done)
    d = distances(np.asarray(im) for im in _ordered(lambda f: _load(store, f), frames))
    table = pa.table({"frame": pa.array(frames[:-1], pa.int64()), "distance_to_next": pa.array(d, pa.float64())})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    store.write_output(SMOOTHNESS, sink.getvalue().to_pybytes(), run_id)
    return store.url(SMOOTHNESS)


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
