"""The job model: what to render, as frozen dataclasses. Pure data: no model, no Ray, no I/O.

`raywalk.core.spec.job_from_dict` builds a validated `Job` from plain data;
`Job.to_dict` gives that data back, and `Job.fingerprint` hashes the part of it
that determines the frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from raywalk.core.kinds import (
    WALK_KEYS,
    CircleMode,
    Direction,
    Easing,
    Fit,
    Method,
    NoiseKind,
    PacingMode,
    Precision,
    WalkKind,
)
from raywalk.core.output_table import OUTPUT_SUFFIXES

__all__ = [
    "DEFAULT_LATENT_CHANNELS",
    "DEFAULT_RENDERER",
    "Chunking",
    "Job",
    "Keyframe",
    "Model",
    "Noise",
    "Outputs",
    "Pacing",
    "Picture",
    "Timing",
    "Walk",
    "Workers",
    "first_pass_height",
    "picture_source",
]

DEFAULT_RENDERER = "raywalk.kerascv:KerasCVRenderer"
DEFAULT_LATENT_CHANNELS = 4  # the default renderer's (KerasCV's Stable Diffusion); a renderer states its own


@dataclass(frozen=True)
class Picture:
    """A picture a walk starts from: at a keyframe, or for every frame (`walk.init_image`).

    `strength` 0 keeps the picture, 1 ignores it (the frame starts from noise at
    `floor(steps x (1 - strength))`, `raywalk.core.trajectory.start_step`).
    `sha256`, `width` and `height` are those of the file as loaded (its pixels
    after EXIF orientation); a run manifest records them, so that a resume needs
    no original.
    """

    image: str  # as written: a path relative to the job file's folder, or a pyarrow.fs URI
    strength: float = 0.0
    fit: Fit = Fit.CROP
    sha256: str | None = None
    width: int | None = None
    height: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"image": self.image, "strength": self.strength, "fit": str(self.fit)}
        recorded = {"sha256": self.sha256, "width": self.width, "height": self.height}
        return {**data, **{k: v for k, v in recorded.items() if v is not None}}


def picture_source(job_source: str, image: str) -> str:
    """Where picture `image` (as a job writes it) is read: a URI as written, else a path resolved against the
    folder of the job file `job_source` (a job from a dict: the working directory)."""
    return image if "://" in image else str(Path(job_source).parent / image)


@dataclass(frozen=True)
class Keyframe:
    """Where an interpolate walk reaches one prompt, and how the segment after it moves."""

    frame: int
    seconds: float | None = None  # as written: `frame` is round(seconds x timing.fps)
    easing: Easing = Easing.LINEAR  # of the segment that follows (the last keyframe's is unused)
    image: Picture | None = None  # the picture the walk passes through at this keyframe

    def to_dict(self, last: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"at": self.frame} if self.seconds is None else {"seconds": self.seconds}
        if self.image is not None:
            data.update(self.image.to_dict())
        return data if last else {**data, "easing": self.easing}


@dataclass(frozen=True)
class Walk:
    """The path through text-encoding space (and, for `noise_circle`, noise space)."""

    kind: WalkKind = WalkKind.INTERPOLATE
    frames: int = 0  # grid walks derive theirs from `size`
    method: Method = Method.LERP
    easing: Easing = Easing.LINEAR
    loop: bool = False
    size: int = 0
    step_size: float = 0.005
    direction: Direction = Direction.ONES
    direction_seed: int = 0
    mode: CircleMode = CircleMode.SEAMLESS
    keyframes: tuple[Keyframe, ...] = ()  # interpolate: one per prompt, at increasing frames, the last the last frame
    pacing: PacingMode = PacingMode.UNIFORM  # interpolate: uniform | perceptual (see `raywalk.core.pacing`)
    init_image: Picture | None = None  # any kind: the picture every frame starts from (a style lock)


@dataclass(frozen=True)
class Noise:
    """The diffusion noise of each frame; every draw is keyed by seed and frame or stream."""

    kind: NoiseKind = NoiseKind.FIXED
    seed: int = 12345
    seeds: tuple[int, ...] = ()  # slerp: one per keyframe prompt (default seed, seed+1, ...)


@dataclass(frozen=True)
class Timing:
    """Walk time: frames per second, and optionally a soundtrack whose beats drive the walk."""

    fps: int
    audio: str | None = None  # as written in the job, relative to the job file's folder
    smoothing: float = 0.1  # seconds: release of the motion after each beat
    floor: float = 0.2  # the slowest step, as a share of the mean step
    duration: float | None = None  # seconds of the soundtrack the walk lasts (read from the file)
    sha256: str | None = None  # of the soundtrack file: the frames follow its content

    def frame(self, seconds: float) -> int:
        """The frame showing at `seconds`: frame k shows at k / fps, so round(seconds x fps), halves up."""
        return math.floor(seconds * self.fps + 0.5)


@dataclass(frozen=True)
class Pacing:
    """The first pass of `walk.pacing: perceptual`: images at evenly spaced parameters, rendered cheaply."""

    samples: int = 9  # images per segment, both ends included (neighbouring segments share one)
    steps: int = 10  # denoising steps of each first-pass image
    size: int = 256  # first-pass width in pixels (height in proportion)


@dataclass(frozen=True)
class Model:
    """The renderer (by import path) and the options it is built with."""

    renderer: str = DEFAULT_RENDERER
    width: int = 512
    height: int = 512
    steps: int = 50
    guidance_scale: float = 7.5
    weights: str = "download"
    precision: Precision = Precision.AUTO
    batch_size: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunking:
    """How frames are split into units of work, and how hard each unit is tried."""

    chunk_size: int = 16
    max_attempts: int = 3
    in_flight: int = 2  # chunks queued per worker, so the next one waits while one renders


@dataclass(frozen=True)
class Workers:
    """Ray resources: how many renderer actors, and what each reserves."""

    count: int = 0  # 0: one per GPU in the cluster (or one, without GPUs); at most MAX_WORKERS
    gpus: float = 1.0
    cpus: float = 1.0
    max_restarts: int = 3  # restarts of each actor; a renderer that keeps dying ends the run, never a hang


@dataclass(frozen=True)
class Outputs:
    """Assembled outputs: kind -> options (see `raywalk.outputs.assemble`)."""

    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    preview_every: int = 0  # rebuild a partial preview every N finished chunks


@dataclass(frozen=True)
class Job:
    """A validated job. Pure data: no model, no Ray, no I/O."""

    name: str
    prompts: tuple[str, ...]
    walk: Walk
    noise: Noise
    model: Model
    chunking: Chunking = Chunking()
    workers: Workers = Workers()
    outputs: Outputs = Outputs()
    timing: Timing | None = None
    pacing: Pacing | None = None  # set when walk.pacing is perceptual
    source: str = field(default="<dict>", compare=False)

    @property
    def num_frames(self) -> int:
        return self.walk.size**2 if self.walk.kind == WalkKind.GRID else self.walk.frames

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The latent of the default renderer, `latent(DEFAULT_LATENT_CHANNELS)`; others pass their own channels."""
        return self.latent(DEFAULT_LATENT_CHANNELS)

    def latent(self, channels: int) -> tuple[int, int, int]:
        """(height/8, width/8, channels): the latent of a renderer with `channels` latent channels."""
        return (self.model.height // 8, self.model.width // 8, channels)

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_frames / self.chunking.chunk_size)

    def chunk_frames(self, chunk: int) -> range:
        """Frames of chunk `chunk`: consecutive, `chunk_size` of them (the last may be short)."""
        size = self.chunking.chunk_size
        return range(chunk * size, min((chunk + 1) * size, self.num_frames))

    @property
    def segments(self) -> int:
        """Segments of an interpolate walk: one between each two consecutive prompts (and back, for a loop)."""
        return len(self.prompts) if self.walk.loop else len(self.prompts) - 1

    def audio_file(self) -> Path | None:
        """The soundtrack, resolved against the job file's folder (a job from a dict: the working directory)."""
        if self.timing is None or self.timing.audio is None:
            return None
        return Path(self.source).parent / self.timing.audio

    @property
    def pictures(self) -> tuple[Picture, ...]:
        """The distinct pictures the walk starts from, in job order: the keyframes' in keyframe order (a picture
        repeated at a later keyframe is listed once), or the init image."""
        if self.walk.init_image is not None:
            return (self.walk.init_image,)
        return tuple(dict.fromkeys(kf.image for kf in self.walk.keyframes if kf.image is not None))

    def picture_source(self, picture: Picture) -> str:
        """Where `picture` is read: its path resolved against the job file's folder, or its URI as written."""
        return picture_source(self.source, picture.image)

    def output_files(self) -> dict[str, str]:
        """Output kind -> file name in the run directory, for the outputs the job asks for."""
        return {kind: f"{self.name}{OUTPUT_SUFFIXES[kind]}" for kind in self.outputs.files}

    def to_dict(self) -> dict[str, Any]:
        """The job as plain data, loadable again by `job_from_dict`."""
        data: dict[str, Any] = _plain(dataclasses.asdict(self))
        data.pop("source")
        data["prompts"] = list(self.prompts)
        data["walk"] = {k: v for k, v in data["walk"].items() if k in WALK_KEYS[self.walk.kind]}
        # Fields added later are written only when used, so older jobs keep their fingerprints.
        if self.walk.keyframes:
            last = len(self.walk.keyframes) - 1
            data["walk"]["keyframes"] = [kf.to_dict(k == last) for k, kf in enumerate(self.walk.keyframes)]
        else:
            data["walk"].pop("keyframes", None)
        if self.walk.pacing == PacingMode.UNIFORM:
            data["walk"].pop("pacing", None)
        if self.walk.init_image is None:
            data["walk"].pop("init_image", None)
        else:
            data["walk"]["init_image"] = self.walk.init_image.to_dict()
        for optional in ("timing", "pacing"):
            if data[optional] is None:
                del data[optional]
        if self.timing is not None:
            data["timing"] = (
                {k: v for k, v in data["timing"].items() if v is not None}
                if self.timing.audio
                else {"fps": self.timing.fps}
            )
        if self.noise.kind == NoiseKind.SLERP:
            data["noise"]["seeds"] = list(self.noise.seeds)
        else:
            del data["noise"]["seeds"]
        data["model"]["options"] = dict(self.model.options)
        data["outputs"] = {
            "preview_every": self.outputs.preview_every,
            **{k: dict(v) for k, v in self.outputs.files.items()},
        }
        return data

    def fingerprint(self) -> str:
        """SHA-256 of what determines the frames; the same job always has the same one."""
        data = self.to_dict()
        for volatile in ("chunking", "workers", "outputs"):
            data.pop(volatile)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """`value` with each `StrEnum` member as its plain string, so that the data dumps as YAML or JSON alike."""
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def first_pass_height(model: Model, size: int) -> int:
    """Height of the perceptual first pass at width `size`, or 0 where `size` does not fit the model.

    It fits when f = model.width / size is a whole number that divides
    model.height into a multiple of 64: the first pass then sees the job's
    own noise averaged down in f x f blocks (`raywalk.core.pacing.first_pass_trajectory`).
    """
    if size < 64 or model.width % size:
        return 0
    factor = model.width // size
    height = model.height // factor
    return height if model.height % factor == 0 and height % 64 == 0 else 0
