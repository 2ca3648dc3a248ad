"""The bounds a job must keep, so that a hostile or mistyped job fails in one line instead of exhausting memory."""

from __future__ import annotations

import re

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BATCH",
    "MAX_CHUNK",
    "MAX_COLUMNS",
    "MAX_FPS",
    "MAX_FRAMES",
    "MAX_GRID",
    "MAX_GUIDANCE",
    "MAX_IN_FLIGHT",
    "MAX_JOB_BYTES",
    "MAX_NAME",
    "MAX_OUTPUT_SIDE",
    "MAX_PACING_SAMPLES",
    "MAX_PICTURE_BYTES",
    "MAX_PICTURE_PIXELS",
    "MAX_PROMPTS",
    "MAX_PROMPT_CHARS",
    "MAX_RESTARTS",
    "MAX_SEED",
    "MAX_SHEET_PIXELS",
    "MAX_SIDE",
    "MAX_SMOOTHING",
    "MAX_STEPS",
    "MAX_STEP_SIZE",
    "MAX_TILE",
    "MAX_WORKERS",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "NAME_PATTERN",
]

MAX_JOB_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000
MAX_NAME = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_PROMPTS = 256
MAX_PROMPT_CHARS = 2_000
MAX_FRAMES = 1_000_000
MAX_GRID = 1_000  # a 1000 x 1000 grid is MAX_FRAMES
MAX_SEED = 2**63 - 1
MAX_SIDE = 4_096
MAX_STEPS = 1_000
MAX_BATCH = 256
MAX_GUIDANCE = 100.0
MAX_STEP_SIZE = 1e6
MAX_CHUNK = 100_000
MAX_ATTEMPTS = 100
MAX_IN_FLIGHT = 64
MAX_FPS = 240
MAX_OUTPUT_SIDE = 8_192
MAX_TILE = 1_024
MAX_COLUMNS = 256
MAX_SHEET_PIXELS = 200_000_000  # a contact sheet of at most ~600 MB of RGB
MAX_SMOOTHING = 60.0  # seconds of release after a beat
MAX_PACING_SAMPLES = 1_000  # first-pass images per segment
MAX_WORKERS = 1024  # renderer actors per run
MAX_RESTARTS = 100  # restarts of one renderer actor (its process or node died) before it counts as lost
MAX_PICTURE_BYTES = 1 << 26  # 64 MiB: a picture file (a keyframe image or init_image)
MAX_PICTURE_PIXELS = 50_000_000  # 50 megapixels (8660 x 5773): about 150 MB of RGB once decoded
