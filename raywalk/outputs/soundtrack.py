"""The soundtrack of a timed walk's MP4: the audio of exactly the frames assembled, without drift.

Frame k of the walk shows at k / fps and the soundtrack starts with frame 0,
so a video of frames [first, first + n) gets the audio of
[first / fps, (first + n) / fps): cut with `atrim` (sample-exact, unlike a
seek), padded with silence when the track ends half a frame early (a walk has
round(duration x fps) frames), encoded to AAC, and muxed beside the video
stream copied as it is. Audio and video then last n / fps seconds each.
Everything runs through imageio-ffmpeg's bundled ffmpeg; durations are
checked by decoding, not by trusting container headers.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg

from raywalk.errors import AudioError, one_line

AAC_BITRATE = "192k"


def _ffmpeg(*args: str) -> str:
    """Run the bundled ffmpeg; returns its stderr (where it reports progress).

    Raises:
        AudioError: ffmpeg failed (its last line of error output is in the message).
    """
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AudioError(f"ffmpeg failed ({done.returncode}): {one_line(last)[:300]}")
    return done.stderr


def video_frames(path: str | Path) -> int:
    """Frames of the first video stream of `path`, counted by reading every packet (no decoding needed).

    Raises:
        AudioError: ffmpeg cannot read the file.
    """
    report = _ffmpeg("-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-")
    counts = re.findall(r"frame=\s*(\d+)", report)
    if not counts:
        raise AudioError(f"{path}: no video frames")
    return int(counts[-1])


def audio_seconds(path: str | Path) -> float:
    """Duration of the first audio stream of `path`, decoded to PCM and counted in samples.

    Raises:
        AudioError: ffmpeg cannot decode it.
    """
    import soundfile

    with tempfile.TemporaryDirectory(prefix="raywalk-audio-") as tmp:
        wav = Path(tmp) / "decoded.wav"
        _ffmpeg("-i", str(path), "-map", "0:a:0", "-c:a", "pcm_s16le", str(wav))
        info = soundfile.info(str(wav))
        return float(info.frames / info.samplerate)


def mux(
    video_path: str | Path, audio_path: str | Path, out_path: str | Path, fps: int, first_frame: int, num_frames: int
) -> Path:
    """Write `out_path`: the video of `video_path` (frames first_frame .. first_frame + num_frames - 1 of the walk,
    in order, at `fps`) with the soundtrack's [first_frame / fps, (first_frame + num_frames) / fps) as AAC.

    A partial run's preview of frames [0, n) is `first_frame=0, num_frames=n`. The video must hold exactly
    `num_frames` frames: anything else would drift, and is refused. Returns `out_path`.

    Raises:
        AudioError: the video has another frame count, or ffmpeg cannot read or write the files.
    """
    if fps <= 0 or first_frame < 0 or num_frames <= 0:
        raise ValueError("mux needs fps > 0, first_frame >= 0 and num_frames > 0")
    found = video_frames(video_path)
    if found != num_frames:
        raise AudioError(f"{video_path}: holds {found} frames, not the {num_frames} the soundtrack is cut for")
    start, duration = repr(first_frame / fps), repr(num_frames / fps)
    _ffmpeg(
        "-y",
        "-i",
        str(video_path),
        "-i",
        str(audio_path),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c:v",
        "copy",
        "-af",
        f"atrim=start={start}:duration={duration},asetpts=PTS-STARTPTS,apad=whole_dur={duration}",
        "-c:a",
        "aac",
        "-b:a",
        AAC_BITRATE,
        "-movflags",
        "+faststart",
        str(out_path),
    )
    return Path(out_path)
