"""Still images of many frames: the n×n grid of a grid walk, and the contact sheet of every k-th frame
(with the job's pictures, if it has any, in a header above the frames)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
    pictures: Sequence[tuple[np.ndarray, str]] = (),
) -> str:
    """Contact sheet PNG `name` of every `every`-th frame among `frames`, labelled; returns where.
    `pictures` (uint8 (H, W, 3) pixels and a label, e.g. "keyframe 0 · strength 0.2") are drawn first,
    one to a cell, in header rows above the frames; without pictures the sheet is the frames alone."""
    picked = [f for f in frames if f % every == 0] or frames[:1]
    width, height = frame_size(store, picked[0])
    size = (tile, max(1, round(tile * height / width)))
    rows = -(-len(picked) // columns)
    font = ImageFont.load_default(size=max(12, tile // 8))
    header = picture_header(pictures, columns, size, font)
    top = header.height if header else 0
    canvas = Image.new("RGB", (columns * size[0], top + rows * size[1]))
    if header:
        canvas.paste(header, (0, 0))
    for i, (frame, thumb) in enumerate(zip(picked, frame_images(store, picked, size))):
        draw = ImageDraw.Draw(thumb)
        box = draw.textbbox((3, 2), str(frame), font=font)
        draw.rectangle((0, 0, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        draw.text((3, 2), str(frame), font=font, fill=(255, 255, 255))
        row, col = divmod(i, columns)
        canvas.paste(thumb, (col * size[0], top + row * size[1]))
    return save_png(store, canvas, name, note, run_id)


def picture_header(
    pictures: Sequence[tuple[np.ndarray, str]],
    columns: int,
    cell: tuple[int, int],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> Image.Image | None:
    """The pictures as thumbnails fitted inside `cell` (keeping their shape, centred on dark grey), each
    with its label under it (a line for each " · "-separated part, cut to the cell's width), `columns` to
    a row; None without pictures."""
    if not pictures:
        return None
    labels = [label.split(" · ") for _, label in pictures]
    line = round(font.getbbox("Ag")[3]) + 3
    step = (cell[0], cell[1] + line * max(map(len, labels)) + 3)
    rows = -(-len(pictures) // columns)
    header = Image.new("RGB", (columns * step[0], rows * step[1]), (24, 24, 24))
    draw = ImageDraw.Draw(header)
    for i, ((pixels, _), lines) in enumerate(zip(pictures, labels)):
        row, col = divmod(i, columns)
        x, y = col * step[0], row * step[1]
        thumb = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
        scale = min((cell[0] - 4) / thumb.width, (cell[1] - 4) / thumb.height)
        thumb = thumb.resize(
            (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))), Image.Resampling.LANCZOS
        )
        header.paste(thumb, (x + (cell[0] - thumb.width) // 2, y + (cell[1] - thumb.height) // 2))
        for j, text in enumerate(lines):
            while len(text) > 1 and draw.textlength(text, font=font) > cell[0] - 6:
                text = text[:-2] + "…"  # cut to the cell, marked
            draw.text((x + 3, y + cell[1] + 2 + j * line), text, font=font, fill=(255, 255, 255))
    return header


def write_contact_sheet(
    store: RunStore,
    num_frames: int,
    name: str,
    every: int | None = None,
    columns: int | None = None,
    tile: int | None = None,
    partial: bool = False,
    pictures: Sequence[tuple[np.ndarray, str]] = (),
) -> str:
    """Every `every`-th frame as a `tile`-pixel-wide thumbnail labelled with its number, under the job's
    `pictures` (see `build_contact_sheet`); options left out (None) take `OUTPUT_DEFAULTS["contact_sheet"]`.

    Raises:
        MissingFramesError: frames are missing and not `partial`.
        AssembleError: no frame is done, or one cannot be read.
    """
    options = output_options("contact_sheet", {"every": every, "columns": columns, "tile": tile})
    frames, name, run_id, note = target(store, num_frames, name, partial)
    return build_contact_sheet(store, frames, name, note=note, run_id=run_id, pictures=pictures, **options)
