"""The names of a run directory's files: pure, no I/O.

Layout under the run root::

    manifest.json                          the job, its fingerprint, the run id, versions, the model stack(s)
    keyframes.npz                          the prompts' encodings, by part (SHA-256 in the manifest)
    timing.npy                             the walk parameter of every frame, when measured (SHA-256 in the manifest)
    soundtrack/beat.flac                   the job's soundtrack, copied in whole (recorded like an output)
    pictures/<sha256>.png                  each picture the walk starts from, copied in whole (the same)
    pacing/000003.png                      the perceptual first pass's images, in order
    frames/000042.png                      one PNG per frame
    index/chunk-000007-<token>.parquet     the rows one chunk attempt rendered (never rewritten)
    damaged/chunk-000003-<token>.parquet   an unreadable index file, moved out once the run is complete
    frames.parquet                         a complete run's newest index row per frame (recorded like an output)
    failures/chunk-000007.json             why a chunk gave up
    outputs/walk.gif.json                  size, SHA-256 and run id of a published output
    walk.gif, walk.mp4, ...                final outputs, whole
    preview/walk.gif, ...                  partial outputs, marked PARTIAL inside
    smoothness.parquet                     distance from each frame to the next (recorded like an output)
    report.html                            the run's report; outputs/report.html.json says what it was built from
    lock.json                              the driver rendering the run, with a heartbeat (`raywalk.run.lock`)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import PurePath

from raywalk.core.job import Job, Picture

MANIFEST = "manifest.json"
KEYFRAMES = "keyframes.npz"
TIMING = "timing.npy"
SOUNDTRACK = "soundtrack"
PICTURES = "pictures"
PACING = "pacing"
SMOOTHNESS = "smoothness.parquet"
FRAMES = "frames"
INDEX = "index"
DAMAGED = "damaged"
FRAMES_TABLE = "frames.parquet"
FAILURES = "failures"
OUTPUTS = "outputs"
PREVIEW = "preview"
REPORT = "report.html"


def frame_name(frame: int) -> str:
    """File name of a frame's PNG: six digits at least, so names sort in frame order."""
    return f"{frame:06d}.png"


def frame_file(frame: int) -> str:
    """Where a frame's PNG lives in the run: frames/000042.png."""
    return f"{FRAMES}/{frame_name(frame)}"


def frame_ranges(frames: Iterable[int]) -> str:
    """Frames as compact ranges for messages: [3, 4, 5, 9] -> "3-5, 9"."""
    parts: list[str] = []
    start = prev = None
    for f in sorted(set(frames)):
        if prev is not None and f == prev + 1:
            prev = f
            continue
        if start is not None:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        start = prev = f
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def soundtrack_name(job: Job) -> str | None:
    """Where the run holds a copy of the job's soundtrack (soundtrack/beat.flac), or None without one."""
    if job.timing is None or job.timing.audio is None:
        return None
    return f"{SOUNDTRACK}/{PurePath(job.timing.audio).name}"


def picture_name(picture: Picture) -> str:
    """Where the run holds a copy of `picture` (one the job recorded: its sha256 is known):
    pictures/<sha256><suffix>, the suffix the job's file name has (lower case)."""
    if picture.sha256 is None:
        raise ValueError(f"picture {picture.image} has no recorded sha256")
    suffix = PurePath(picture.image.split("?", 1)[0]).suffix.lower()
    return f"{PICTURES}/{picture.sha256}{suffix}"


def preview_name(name: str) -> str:
    """Where the partial version of output `name` lives: preview/walk.gif."""
    return f"{PREVIEW}/{name}"


def pacing_name(sample: int) -> str:
    """Where first-pass image `sample` lives: pacing/000003.png."""
    return f"{PACING}/{frame_name(sample)}"


def index_file_name(chunk: int) -> str:
    """A new name for an index file of chunk `chunk`: index/chunk-000007-<token>.parquet, never reused."""
    return f"{INDEX}/chunk-{chunk:06d}-{uuid.uuid4().hex[:8]}.parquet"


def is_index_file(base_name: str) -> bool:
    """Whether a file in index/ is one raywalk writes (`chunk-000007-<token>.parquet`; before tokens,
    `chunk-000007.parquet`): other files there (a user's notes) are not the index."""
    return base_name.startswith("chunk-") and base_name.endswith(".parquet")


def failure_name(chunk: int) -> str:
    """Where chunk `chunk`'s failure record lives: failures/chunk-000007.json."""
    return f"{FAILURES}/chunk-{chunk:06d}.json"


def failure_chunk(base_name: str) -> int | None:
    """The chunk a file in failures/ records, or None if it is not a failure record's name."""
    stem = base_name.removesuffix(".json")
    return int(stem[6:]) if stem.startswith("chunk-") and stem[6:].isdigit() else None


def output_record_name(name: str) -> str:
    """Where output `name`'s record lives: outputs/walk.gif.json."""
    return f"{OUTPUTS}/{name}.json"
