"""A run's frames as images for outputs: decoded a few at a time, in order, fitted to one size.

Frames are read from the run one at a time, in index order whatever order
they were rendered in, by a small pool of threads that decodes a few frames
ahead (`frame_images`); nothing holds more than a handful of images, so a
20,000-frame run assembles in the memory of a 20-frame one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from PIL import Image, PngImagePlugin

from raywalk.concurrency import bounded_map
from raywalk.errors import AssembleError, one_line
from raywalk.run.store import FRAMES, RunStore, frame_name

T = TypeVar("T")

THREADS = min(4, os.cpu_count() or 1)
AHEAD = 2 * THREADS  # frames in flight: the memory bound


def ping_pong(frames: list[int]) -> list[int]:
    """Forward, then backward repeating neither end: 0..N-1, N-2..1."""
    return frames + frames[-2:0:-1]


def load_frame(store: RunStore, frame: int, header_only: bool = False) -> Image.Image:
    """Frame `frame` of the run as an RGB image (with `header_only`, opened but not decoded).

    Raises:
        AssembleError: the frame has disappeared or cannot be decoded.
    """
    where = store.url(f"{FRAMES}/{frame_name(frame)}")
    try:
        data = store.read_frame(frame)
    except FileNotFoundError:
        raise AssembleError(f"frame {frame}: {where} has disappeared") from None
    try:
        im = Image.open(io.BytesIO(data))
        return im if header_only else im.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise AssembleError(f"frame {frame}: cannot read {where}: {one_line(exc)}") from None


def frame_size(store: RunStore, frame: int) -> tuple[int, int]:
    """(width, height) of a frame, from its PNG header; every output frame is fitted to it."""
    return load_frame(store, frame, header_only=True).size


def fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`im` resized to `size` (Lanczos), or itself if it has that size already."""
    return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)


def ordered(fn: Callable[[int], T], frames: Iterable[int]) -> Iterator[T]:
    """`map(fn, frames)` on a few threads, in order, with at most AHEAD results pending."""
    return bounded_map(fn, frames, THREADS, AHEAD)


def frame_images(store: RunStore, frames: Iterable[int], size: tuple[int, int] | None = None) -> Iterator[Image.Image]:
    """The images of `frames` in order (fitted to `size` if given), decoded a few ahead."""
    if size is None:
        return ordered(lambda f: load_frame(store, f), frames)
    return ordered(lambda f: fit(load_frame(store, f), size), frames)


def save_png(store: RunStore, image: Image.Image, name: str, note: str, run_id: str | None) -> str:
    """Publish `image` as PNG output `name` (with `note` as its Comment text), recorded for `run_id`; returns
    where."""
    info = PngImagePlugin.PngInfo()
    if note:
        info.add_text("Comment", note)
    buf = io.BytesIO()
    image.save(buf, "PNG", pnginfo=info)
    store.write_output(name, buf.getbuffer(), run_id)
    return store.url(name)
