"""The MP4's soundtrack: exactly the frames assembled, audio and video of the same length (decoded)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile

from raywalk.errors import AudioError
from raywalk.outputs.soundtrack import audio_seconds, mux, video_frames

FPS = 12


def tiny_video(path: Path, frames: int) -> Path:
    """`frames` 16x16 frames at FPS, each a flat grey of its own."""
    writer = imageio_ffmpeg.write_frames(
        str(path), (16, 16), fps=FPS, codec="libx264", quality=None, macro_block_size=2, output_params=["-crf", "30"]
    )
    writer.send(None)
    for k in range(frames):
        writer.send(np.full((16, 16, 3), 10 * k % 250, np.uint8))
    writer.close()
    return path


@pytest.fixture(scope="module")
def soundtrack(tmp_path_factory) -> Path:
    """3.02 s of a 440 Hz tone: 36 frames at 12 fps, the last 0.02 s short of a 37th."""
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    rate = 44_100
    soundfile.write(path, 0.2 * np.sin(2 * np.pi * 440 * np.arange(int(3.02 * rate)) / rate), rate)
    return path


@pytest.mark.parametrize(
    "first,frames",
    [(0, 36), (0, 13), (10, 7), (30, 7)],
    ids=["full", "partial-first-13", "frames-10-16", "past-the-end"],
)
def test_audio_lasts_as_long_as_the_video(tmp_path, soundtrack, first, frames):
    video = tiny_video(tmp_path / "video.mp4", frames)
    out = mux(video, soundtrack, tmp_path / "out.mp4", FPS, first, frames)
    video_seconds = video_frames(out) / FPS
    audio = audio_seconds(out)
    print(f"\nframes [{first}, {first + frames}): video {video_seconds:.4f} s, audio {audio:.4f} s")
    assert video_frames(out) == frames
    assert abs(audio - video_seconds) < 1 / FPS
    assert abs(audio - frames / FPS) < 1e-3  # in fact to the sample


def test_the_soundtrack_is_cut_at_the_first_frames_time(tmp_path):
    rate = 8000
    silence_then_tone = np.r_[np.zeros(rate), 0.5 * np.sin(2 * np.pi * 500 * np.arange(rate) / rate)]
    soundfile.write(tmp_path / "st.wav", silence_then_tone, rate)
    out = mux(tiny_video(tmp_path / "v.mp4", 6), tmp_path / "st.wav", tmp_path / "o.mp4", FPS, 9, 6)
    wav = tmp_path / "back.wav"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(out), "-map", "0:a", str(wav)], check=True
    )
    samples, back_rate = soundfile.read(wav)
    samples = samples if samples.ndim == 1 else samples.mean(axis=1)
    onset = np.argmax(np.abs(samples) > 0.1) / back_rate
    assert onset == pytest.approx(1.0 - 9 / FPS, abs=0.01)  # the tone starts 1 s into the track: 0.25 s in


def test_a_video_with_another_frame_count_is_refused(tmp_path, soundtrack):
    video = tiny_video(tmp_path / "video.mp4", 5)
    with pytest.raises(AudioError, match="holds 5 frames, not the 6"):
        mux(video, soundtrack, tmp_path / "out.mp4", FPS, 0, 6)
