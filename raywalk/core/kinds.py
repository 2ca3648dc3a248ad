"""The closed sets a job chooses from, as `StrEnum`s.

Each member is the string the job file writes, and compares equal to it, so a
job's `to_dict` and fingerprint are the same whether a field holds the member
or the plain string.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ARTICLES",
    "PRECISIONS",
    "WALK_KEYS",
    "CircleMode",
    "Direction",
    "Easing",
    "Fit",
    "Method",
    "NoiseKind",
    "OutputKind",
    "PacingMode",
    "Precision",
    "WalkKind",
]


class WalkKind(StrEnum):
    """The path a walk takes: between prompts, over a 2x2 grid of them, away from one, or around its noise."""

    INTERPOLATE = "interpolate"
    GRID = "grid"
    TEXT_WALK = "text_walk"
    NOISE_CIRCLE = "noise_circle"


class NoiseKind(StrEnum):
    """How each frame's diffusion noise is drawn."""

    FIXED = "fixed"
    PER_FRAME = "per_frame"
    SLERP = "slerp"
    CIRCLE = "circle"


class Method(StrEnum):
    """How encodings are mixed between two prompts."""

    LERP = "lerp"
    SLERP = "slerp"


class Easing(StrEnum):
    """How a segment's parameter moves from 0 to 1."""

    LINEAR = "linear"
    EASE_IN_OUT = "ease_in_out"
    COSINE = "cosine"


class Direction(StrEnum):
    """A text walk's direction: all ones, or random per part."""

    ONES = "ones"
    RANDOM = "random"


class PacingMode(StrEnum):
    """An interpolate walk's spacing of frames: even in the parameter, or in how the pictures change."""

    UNIFORM = "uniform"
    PERCEPTUAL = "perceptual"


class CircleMode(StrEnum):
    """A noise circle: seamless (the last frame leads into the first) or the KerasCV tutorial's."""

    SEAMLESS = "seamless"
    TUTORIAL = "tutorial"


class Fit(StrEnum):
    """How a picture is fitted to the model's width and height (`raywalk.core.picture.fit_picture`)."""

    CROP = "crop"  # scaled to cover the frame, then centre-cropped
    PAD = "pad"  # scaled to fit inside the frame, then centred on black
    STRETCH = "stretch"  # resized to exactly the frame, aspect ratio not kept


class Precision(StrEnum):
    """The numeric precision a renderer runs at."""

    AUTO = "auto"
    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    MIXED_BFLOAT16 = "mixed_bfloat16"


class OutputKind(StrEnum):
    """The files a run can assemble from its frames."""

    GIF = "gif"
    MP4 = "mp4"
    GRID = "grid"
    CONTACT_SHEET = "contact_sheet"


WALK_KEYS: dict[WalkKind, tuple[str, ...]] = {  # the fields of `Walk` that each kind reads
    WalkKind.INTERPOLATE: ("kind", "frames", "method", "easing", "loop", "keyframes", "pacing", "init_image"),
    WalkKind.GRID: ("kind", "size", "method", "easing", "init_image"),
    WalkKind.TEXT_WALK: ("kind", "frames", "step_size", "direction", "direction_seed", "init_image"),
    WalkKind.NOISE_CIRCLE: ("kind", "frames", "mode", "init_image"),
}
ARTICLES: dict[WalkKind, str] = {kind: ("an" if kind[0] in "aeiou" else "a") for kind in WalkKind}
PRECISIONS: tuple[str, ...] = tuple(member.value for member in Precision)  # for renderers that accept each
