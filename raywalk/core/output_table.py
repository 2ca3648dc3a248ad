"""The one table of assembled outputs: each kind's file suffix and option defaults.

The validator fills a job's output options from it, and the assembler builds
each kind with them; neither keeps a copy.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from raywalk.core.kinds import OutputKind

__all__ = ["OUTPUT_DEFAULTS", "OUTPUT_SUFFIXES", "output_defaults"]

OUTPUT_SUFFIXES: dict[str, str] = {
    OutputKind.GIF: ".gif",
    OutputKind.MP4: ".mp4",
    OutputKind.GRID: "-grid.png",
    OutputKind.CONTACT_SHEET: "-contact.png",
}
# kind -> option -> default. A timed walk's MP4 plays at timing.fps instead (`output_defaults`).
OUTPUT_DEFAULTS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        OutputKind.GIF: MappingProxyType({"fps": 10, "rubber_band": False, "resize": None}),
        OutputKind.MP4: MappingProxyType({"fps": 24, "rubber_band": False, "quality": 8}),
        OutputKind.GRID: MappingProxyType({}),
        OutputKind.CONTACT_SHEET: MappingProxyType({"every": 10, "columns": 8, "tile": 128}),
    }
)


def output_defaults(kind: str, fps: int | None = None) -> dict[str, Any]:
    """The default options of output `kind`; `fps`: the job's timing.fps, the MP4's default when given."""
    defaults = dict(OUTPUT_DEFAULTS[kind])
    if kind == OutputKind.MP4 and fps is not None:
        defaults["fps"] = fps
    return defaults
