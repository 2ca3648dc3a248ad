"""Outputs from a run: order, rubber band, GIF/MP4 timing, grid placement, missing frames."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from raywalk import job_from_dict, load_job
from raywalk.errors import AssembleError
from raywalk.outputs.assemble import assemble, assemble_job, assemble_run
from raywalk.outputs.frames import ping_pong
from raywalk.outputs.gif import write_gif
from raywalk.outputs.mp4 import write_mp4
from raywalk.outputs.sheets import write_contact_sheet, write_grid
from raywalk.outputs.target import MissingFramesError
from raywalk.run.manifest import new_manifest
from raywalk.run.store import RunStore, StoreError

from builders import write_chunk

JOBS = Path(__file__).resolve().parent.parent / "jobs"

SIZE = 32


def colour(frame: int) -> tuple[int, int, int]:
    """A distinct solid colour per frame (exact through PNG and GIF)."""
    return ((frame * 67 + 20) % 256, (frame * 131 + 90) % 256, (frame * 29 + 160) % 256)


def grey(frame: int, n: int) -> int:
    """A grey level rising with the frame number, far enough apart to survive H.264."""
    return 20 + frame * (200 // max(n - 1, 1))


def solid(rgb: tuple[int, int, int], size: int = SIZE) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, "PNG")
    return buf.getvalue()


def make_run(store: RunStore, num_frames: int, chunk_size: int = 4, paint=colour, job=None) -> RunStore:
    """Start a run of `job` (default: a walk of `num_frames`) unless one is there, then write its chunks
    last-first, each chunk's frames in reverse, like a busy cluster might."""
    manifest = store.read_manifest()
    if manifest is None:
        job = job or job_from_dict({"name": "walk", "prompts": ["a", "b"], "walk": {"frames": max(num_frames, 2)}})
        manifest = new_manifest(job)
        store.write_manifest(manifest)
    chunks = [list(range(s, min(s + chunk_size, num_frames))) for s in range(0, num_frames, chunk_size)]
    for chunk in reversed(range(len(chunks))):
        frames = chunks[chunk][::-1]
        write_chunk(
            store,
            chunk,
            frames,
            images={f: solid(paint(f)) for f in frames},
            size=SIZE,
            run_id=manifest.run_id,
            fingerprint=manifest.fingerprint,
        )
    return store


def run_id(store: RunStore) -> str:
    return store.require_manifest().run_id


def gif_frames(data: bytes) -> tuple[list[tuple[int, int, int]], list[int], Image.Image]:
    """Centre colour and duration of every frame of a GIF."""
    im = Image.open(io.BytesIO(data))
    colours, durations = [], []
    for i in range(im.n_frames):
        im.seek(i)
        colours.append(im.convert("RGB").getpixel((im.width // 2, im.height // 2)))
        durations.append(im.info["duration"])
    return colours, durations, im


def ffmpeg_frames(path: Path) -> tuple[dict, list[np.ndarray]]:
    """Metadata and RGB frames of a video (or GIF) as imageio-ffmpeg decodes it."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]
    return meta, frames


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "run")


def test_ping_pong_repeats_neither_end():
    assert ping_pong([0, 1, 2, 3, 4]) == [0, 1, 2, 3, 4, 3, 2, 1]
    assert ping_pong([0, 1]) == [0, 1]
    assert ping_pong([7]) == [7]


def test_gif_in_frame_order_with_durations_and_loop(store, tmp_path):
    make_run(store, 10, chunk_size=3)
    where = write_gif(store, 10, "walk.gif", fps=4)
    assert where == store.url("walk.gif") == str(tmp_path / "run" / "walk.gif")
    colours, durations, im = gif_frames(store.read_bytes("walk.gif"))
    assert colours == [colour(f) for f in range(10)]
    assert durations == [250] * 10
    assert im.info["loop"] == 0 and im.size == (SIZE, SIZE)
    meta, frames = ffmpeg_frames(tmp_path / "run" / "walk.gif")  # a second, independent decoder
    assert meta["fps"] == 4 and len(frames) == 10


def test_gif_rubber_band_and_resize(store):
    make_run(store, 6)
    write_gif(store, 6, "walk.gif", fps=10, rubber_band=True, resize=[20, 12])
    colours, durations, im = gif_frames(store.read_bytes("walk.gif"))
    assert colours == [colour(f) for f in [0, 1, 2, 3, 4, 5, 4, 3, 2, 1]]
    assert durations == [100] * 10 and im.size == (20, 12)


def test_duplicate_index_rows_do_not_duplicate_frames(store):
    make_run(store, 6, chunk_size=6)
    write_chunk(store, 9, [4, 5], images={f: solid(colour(f)) for f in (4, 5)}, size=SIZE, run_id=run_id(store))
    write_chunk(
        store,
        0,
        list(range(6)),
        images={f: solid(colour(f)) for f in range(6)},
        attempt=1,
        size=SIZE,
        run_id=run_id(store),
    )
    assert store.read_index().num_rows == 14  # append-only: the retried chunk 0 adds its rows
    colours, _, _ = gif_frames(store.read_bytes(Path(write_gif(store, 6, "walk.gif")).name))
    assert colours == [colour(f) for f in range(6)]


def test_mp4_frame_count_fps_and_order(store, tmp_path):
    n = 9
    make_run(store, n, paint=lambda f: (grey(f, n),) * 3)
    write_mp4(store, n, "walk.mp4", fps=12, quality=9)
    meta, frames = ffmpeg_frames(tmp_path / "run" / "walk.mp4")
    assert meta["codec"] == "h264" and meta["fps"] == 12 and meta["size"] == (SIZE, SIZE)
    assert len(frames) == n
    assert [int(round(f.mean())) for f in frames] == pytest.approx([grey(f, n) for f in range(n)], abs=4)

    write_mp4(store, n, "band.mp4", fps=30, rubber_band=True, quality=6)
    meta, frames = ffmpeg_frames(tmp_path / "run" / "band.mp4")
    assert meta["fps"] == 30 and len(frames) == 2 * n - 2
    order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 7, 6, 5, 4, 3, 2, 1]
    assert [int(round(f.mean())) for f in frames] == pytest.approx([grey(f, n) for f in order], abs=6)

    write_mp4(store, n, "worst.mp4", quality=0)  # the bottom of the scale still encodes (CRF 51)
    assert len(ffmpeg_frames(tmp_path / "run" / "worst.mp4")[1]) == n


def test_grid_tiles_row_major(store):
    n = 3
    make_run(store, n * n, chunk_size=2)
    write_grid(store, n, "walk-grid.png")
    grid = Image.open(io.BytesIO(store.read_bytes("walk-grid.png")))
    assert grid.size == (n * SIZE, n * SIZE)
    for frame in range(n * n):
        row, col = divmod(frame, n)
        assert grid.getpixel((col * SIZE + SIZE // 2, row * SIZE + SIZE // 2)) == colour(frame)


def test_contact_sheet_every_kth_frame_labelled(store):
    make_run(store, 23)
    write_contact_sheet(store, 23, "walk-contact.png", every=5, columns=2, tile=64)
    sheet = Image.open(io.BytesIO(store.read_bytes("walk-contact.png"))).convert("RGB")
    assert sheet.size == (2 * 64, 3 * 64)  # frames 0, 5, 10, 15, 20
    for i, frame in enumerate([0, 5, 10, 15, 20]):
        row, col = divmod(i, 2)
        assert sheet.getpixel((col * 64 + 48, row * 64 + 48)) == colour(frame)
        label = np.asarray(sheet.crop((col * 64, row * 64, col * 64 + 24, row * 64 + 12)))
        assert (label == 0).all(axis=2).any() and (label > 150).all(axis=2).any(), f"no label on frame {frame}"
    assert sheet.getpixel((64 + 32, 2 * 64 + 32)) == (0, 0, 0)  # the empty last cell


# SHA-256 of the contact sheets' pixels built by the code before pictures (commit 0b5c4af), for 23 frames
SHEETS_BEFORE_PICTURES = {
    (5, 2, 64): "2607230697a806cf4fd40235c89af76199e004114d9529a8d713bb5bedd4a203",
    (10, 8, 128): "4cf0b2e6a9b127a37f3c28f296dfadf52653d4ec99106bb9c29352689f09926d",  # the defaults
}


@pytest.mark.parametrize("options", SHEETS_BEFORE_PICTURES, ids=lambda o: "every {} columns {} tile {}".format(*o))
def test_a_contact_sheet_without_pictures_is_the_sheet_of_before(store, options):
    make_run(store, 23)
    every, columns, tile = options
    digests = []
    for pictures in ((), None):
        extra = {} if pictures is None else {"pictures": pictures}
        write_contact_sheet(store, 23, "walk-contact.png", every=every, columns=columns, tile=tile, **extra)
        sheet = np.asarray(Image.open(io.BytesIO(store.read_bytes("walk-contact.png"))))
        digests.append(hashlib.sha256(sheet.tobytes()).hexdigest())
    assert digests == [SHEETS_BEFORE_PICTURES[options]] * 2


def test_contact_sheet_shows_the_pictures_above_the_frames(store):
    make_run(store, 23)
    wide = np.zeros((30, 60, 3), np.uint8)
    wide[:, :, 0] = 250  # red, twice as wide as high
    tall = np.zeros((80, 40, 3), np.uint8)
    tall[:, :, 2] = 250  # blue, twice as high as wide
    pictures = [(wide, "keyframe 0 · strength 0.2 · crop"), (tall, "keyframe 1 · strength 0.55 · a long label to cut")]
    write_contact_sheet(store, 23, "walk-contact.png", every=5, columns=2, tile=64, pictures=pictures)
    sheet = np.asarray(Image.open(io.BytesIO(store.read_bytes("walk-contact.png"))).convert("RGB"))
    top = sheet.shape[0] - 3 * 64  # the header: one row of pictures, then the frames as before
    assert sheet.shape[1] == 2 * 64 and 64 + 3 * 12 <= top < 64 + 3 * 24
    red = np.argwhere((sheet[:top, :64] == (250, 0, 0)).all(axis=2))
    blue = np.argwhere((sheet[:top, 64:] == (0, 0, 250)).all(axis=2))
    (ry0, rx0), (ry1, rx1) = red.min(0), red.max(0)
    (by0, bx0), (by1, bx1) = blue.min(0), blue.max(0)
    assert rx1 - rx0 + 1 >= 56 and 2 * (ry1 - ry0 + 1) in range(rx1 - rx0 - 2, rx1 - rx0 + 4)  # its shape kept
    assert by1 - by0 + 1 >= 56 and 2 * (bx1 - bx0 + 1) in range(by1 - by0 - 2, by1 - by0 + 4)
    assert abs((ry0 + ry1) / 2 - 32) <= 1 and abs((rx0 + rx1) / 2 - 32) <= 1  # centred in its cell
    for col in range(2):  # the labels: white text under each picture, three lines (the parts of the label)
        label = sheet[64:top, col * 64 : (col + 1) * 64]
        line = (label.shape[0] - 3) // 3
        for j in range(3):
            text = label[2 + j * line : 2 + (j + 1) * line]
            assert (text > 200).all(axis=2).any(), f"no line {j} under picture {col}"
    for i, frame in enumerate([0, 5, 10, 15, 20]):  # the frames where they were, moved down by the header
        row, col = divmod(i, 2)
        assert tuple(sheet[top + row * 64 + 48, col * 64 + 48]) == colour(frame)
    # five more pictures than columns: a second header row
    write_contact_sheet(store, 23, "walk-contact.png", every=5, columns=2, tile=64, pictures=pictures * 2)
    assert Image.open(io.BytesIO(store.read_bytes("walk-contact.png"))).height == 2 * top + 3 * 64


def test_missing_frames_named_as_ranges(store, tmp_path):
    make_run(store, 12)
    for frame in (3, 4, 5, 9):
        store.delete(f"frames/{frame:06d}.png")
    with pytest.raises(MissingFramesError) as err:
        assemble(store, 12, {"gif": {}, "mp4": {}}, "walk")
    assert str(err.value) == f"4 of 12 frames missing (3-5, 9): run `raywalk resume {tmp_path / 'run'}`"
    assert err.value.missing == [3, 4, 5, 9]
    assert not store.exists("walk.gif") and not store.exists("walk.mp4")
    with pytest.raises(MissingFramesError, match=r"3 of 9 frames missing \(3-5\)"):
        write_grid(store, 3, "walk-grid.png")


def test_partial_assembles_what_exists(store, caplog):
    make_run(store, 8)
    store.delete("frames/000002.png")
    store.delete("frames/000006.png")
    written = assemble(
        store,
        10,
        {"gif": {"fps": 5}, "contact_sheet": {"every": 2, "columns": 5}},
        "walk",
        partial=True,
        note="raywalk test",
    )
    assert written == [store.url("preview/walk.gif"), store.url("preview/walk-contact.png")]
    colours, _, im = gif_frames(store.read_bytes("preview/walk.gif"))
    assert colours == [colour(f) for f in (0, 1, 3, 4, 5, 7)]
    assert im.info["comment"] == b"PARTIAL: 6 of 10 frames; raywalk test"
    sheet = Image.open(io.BytesIO(store.read_bytes("preview/walk-contact.png")))
    assert sheet.text["Comment"].startswith("PARTIAL: 6 of 10 frames")
    assert "4 of 10 frames missing (2, 6, 8-9)" in caplog.text
    assert not store.exists("walk.gif") and not store.exists("walk-contact.png")  # final names: whole runs only
    assert store.output_record("preview/walk.gif") is None


def test_nothing_rendered_yet(store):
    make_run(store, 0)
    with pytest.raises(AssembleError, match="no frames rendered yet"):
        write_gif(store, 4, "walk.gif", partial=True)


def test_unreadable_png_is_named(store):
    make_run(store, 6)
    good = store.read_frame(4)
    store.write_bytes("frames/000004.png", good[:8] + b"\0" * (len(good) - 8))  # same size: passes the size check
    with pytest.raises(AssembleError, match=re.escape(store.url("frames/000004.png"))) as err:
        write_gif(store, 6, "walk.gif")
    assert "frame 4" in str(err.value) and "\n" not in str(err.value)
    assert not store.exists("walk.gif")


def test_assemble_rejects_unknown_outputs(store):
    make_run(store, 4)
    with pytest.raises(ValueError, match="webm"):
        assemble(store, 4, {"webm": {}}, "walk")
    with pytest.raises(ValueError, match="outputs.gif: unknown options speed"):
        assemble(store, 4, {"gif": {"speed": 2}}, "walk")
    with pytest.raises(ValueError, match="grid_size"):
        assemble(store, 4, {"grid": {}}, "walk")


def test_assemble_from_an_s3_run(s3_endpoint, tmp_path):
    store = make_run(RunStore(s3_endpoint.uri("assemble/run")), 9)
    written = assemble(
        store,
        9,
        {"gif": {"rubber_band": True}, "mp4": {"fps": 8}, "grid": {}, "contact_sheet": {"every": 3}},
        "walk",
        grid_size=3,
    )
    assert written == [store.url(n) for n in ("walk.gif", "walk.mp4", "walk-grid.png", "walk-contact.png")]
    assert written[0] == "s3://raywalk-test/assemble/run/walk.gif"
    colours, _, _ = gif_frames(store.read_bytes("walk.gif"))
    assert colours == [colour(f) for f in ping_pong(list(range(9)))]
    (tmp_path / "walk.mp4").write_bytes(store.read_bytes("walk.mp4"))
    meta, frames = ffmpeg_frames(tmp_path / "walk.mp4")
    assert meta["fps"] == 8 and len(frames) == 9
    grid = Image.open(io.BytesIO(store.read_bytes("walk-grid.png")))
    assert grid.getpixel((2 * SIZE + 5, 1 * SIZE + 5)) == colour(5)


def test_assemble_job_builds_a_grid_jobs_outputs(store):
    job = load_job(JOBS / "four-way-grid.yaml")
    make_run(store, job.num_frames, chunk_size=job.chunking.chunk_size, job=job)
    written = assemble_job(store, job)
    assert written == [store.url("four-way-grid-grid.png"), store.url("four-way-grid-contact.png")]
    assert store.output_ok("four-way-grid-grid.png", run_id(store))
    grid = Image.open(io.BytesIO(store.read_bytes("four-way-grid-grid.png")))
    assert grid.size == (6 * SIZE, 6 * SIZE)
    assert grid.getpixel((5 * SIZE + 3, 1 * SIZE + 3)) == colour(11)  # row 1, column 5


def test_assemble_run_reads_the_job_from_the_manifest(store):
    with pytest.raises(StoreError, match="no run there"):
        list(assemble_run(store.uri))
    job = load_job(JOBS / "smoke.yaml")
    store.write_manifest(new_manifest(job))
    make_run(store, job.num_frames - 2)
    with pytest.raises(MissingFramesError, match=rf"2 of {job.num_frames} frames missing \(4-5\)"):
        list(assemble_run(store.uri))
    lines = list(assemble_run(store.uri, partial=True))
    assert lines == [
        f"previews from {job.num_frames - 2} of {job.num_frames} frames (2 missing: 4-5)",
        store.url("preview/smoke.gif"),
        store.url("preview/smoke.mp4"),
        store.url("preview/smoke-contact.png"),
    ]
    colours, durations, _ = gif_frames(store.read_bytes("preview/smoke.gif"))
    assert colours == [colour(f) for f in (0, 1, 2, 3, 2, 1)] and durations == [250] * 6
