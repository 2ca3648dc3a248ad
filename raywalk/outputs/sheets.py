"""Still images of many frames: the n×n grid of a grid walk, and the contact sheet of every k-th frame."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from raywalk.outputs.defaults import output_options
from raywalk.outputs.frames import frame_images, frame_size, save_png
from raywalk.outputs.target import target
from raywalk.run.store import RunStore


def build_grid(
    store: RunStore, frames: list[int], name: str, *, n: int, note: str = "", run_id: str | None = None
) -> str:
    """n×n PNG `name` of the done frames among 0..n²-1, row-major; returns where."""
    tiles = [f for f in frames if f < n * n]
    w, h = frame_size(store, tiles[0])
    canvas = Image.new("RGB", (n * w, n * h))
    for frame, im in zip(tiles, frame_images(store, tiles, (w, h))):
        row, col = divmod(frame, n)
        canvas.paste(im, (col * w, row * h))
    return save_png(store, canvas, name, note, run_id)


def write_grid(store: RunStore, n: int, name: str, partial: bool = False) -> str:
    """n×n image of frames 0..n²-1, row-major like the tutorial's plot_grid (frame k at row k//n).

    Raises:
        MissingFramesError: frames are missing and not `partial`.
        AssembleError: no frame is done, or one cannot be read.
    """
    frames, name, run_id, note = target(store, n * n, name, partial)
    return build_grid(store, frames, name, n=n, note=note, run_id=run_id)


def build_contact_sheet(
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
    """Contact sheet PNG `name` of every `every`-th frame among `frames`, labelled; returns where."""
    picked = [f for f in frames if f % every == 0] or frames[:1]
    width, height = frame_size(store, picked[0])
    size = (tile, max(1, round(tile * height / width)))
    rows = -(-len(picked) // columns)
    canvas = Image.new("RGB", (columns * size[0], rows * size[1]))
    font = ImageFont.load_default(size=max(12, tile // 8))
    for i, (frame, thumb) in enumerate(zip(picked, frame_images(store, picked, size))):
        draw = ImageDraw.Draw(thumb)
        box = draw.textbbox((3, 2), str(frame), font=font)
        draw.rectangle((0, 0, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        draw.text((3, 2), str(frame), font=font, fill=(255, 255, 255))
        row, col = divmod(i, columns)
        canvas.paste(thumb, (col * size[0], row * size[1]))
    return save_png(store, canvas, name, note, run_id)


def write_contact_sheet(
    store: RunStore,
    num_frames: int,
    name: str,
    every: int | None = None,
    columns: int | None = None,
    tile: int | None = None,
    partial: bool = False,
) -> str:
    """Every `every`-th frame as a `tile`-pixel-wide thumbnail labelled with its number; options left out
    (None) take `OUTPUT_DEFAULTS["contact_sheet"]`.

    Raises:
        MissingFramesError: frames are missing and not `partial`.
        AssembleError: no frame is done, or one cannot be read.
    """
    options = output_options("contact_sheet", {"every": every, "columns": columns, "tile": tile})
    frames, name, run_id, note = target(store, num_frames, name, partial)
    return build_contact_sheet(store, frames, name, note=note, run_id=run_id, **options)
