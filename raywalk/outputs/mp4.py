"""H.264 MP4 through imageio-ffmpeg's bundled ffmpeg, fed a frame at a time.

A timed walk's MP4 carries the run's copy of its soundtrack, cut to exactly
the frames assembled (`raywalk.outputs.soundtrack.mux`); a preview's MP4 then
holds only the leading consecutive frames, so that picture and sound stay in
step.
"""

from __future__ import annotations

import os
import tempfile

import imageio_ffmpeg
import numpy as np

from raywalk.outputs.defaults import output_options
from raywalk.outputs.frames import frame_images, frame_size, ping_pong
from raywalk.outputs.soundtrack import mux
from raywalk.outputs.target import target
from raywalk.run.store import RunStore


def build_mp4(
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
    """MP4 `name` of `frames` (already checked), published through the store; returns where. With
    `soundtrack` (the run's copy), the video of `frames` (consecutive from 0) muxed with its audio."""
    with store.local_output(name, run_id) as path:
        if soundtrack is None:
            _encode(store, frames, path, fps=fps, rubber_band=rubber_band, quality=quality, note=note)
        else:
            with tempfile.TemporaryDirectory(prefix="raywalk-") as tmp, store.local_file(soundtrack) as audio:
                video = os.path.join(tmp, "video.mp4")
                _encode(store, frames, video, fps=fps, rubber_band=rubber_band, quality=quality, note=note)
                mux(video, audio, path, fps, first_frame=0, num_frames=len(frames))
    return store.url(name)


def _encode(
    store: RunStore, frames: list[int], path: str, *, fps: int, rubber_band: bool, quality: float, note: str
) -> None:
    # quality 0..10 as imageio-ffmpeg means it (10 best), mapped to x264's CRF
    # here because imageio-ffmpeg refuses 0.
    crf = round((1 - quality / 10) * 51)
    size = frame_size(store, frames[0])
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
        for im in frame_images(store, ping_pong(frames) if rubber_band else frames, size):
            writer.send(np.asarray(im))
    finally:
        writer.close()


def write_mp4(
    store: RunStore,
    num_frames: int,
    name: str,
    fps: int | None = None,
    rubber_band: bool | None = None,
    quality: float | None = None,
    partial: bool = False,
) -> str:
    """H.264 MP4 `name`; `quality` 0..10, 10 best; options left out (None) take `OUTPUT_DEFAULTS["mp4"]`;
    `partial` as for GIFs.

    Raises:
        MissingFramesError: frames are missing and not `partial`.
        AssembleError: no frame is done, or one cannot be read.
    """
    options = output_options("mp4", {"fps": fps, "rubber_band": rubber_band, "quality": quality})
    frames, name, run_id, note = target(store, num_frames, name, partial)
    return build_mp4(store, frames, name, note=note, run_id=run_id, **options)
