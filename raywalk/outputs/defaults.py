"""The options of each output kind and their defaults: the one table assembly fills a job's options from.

A job's `outputs` section names kinds (`gif`, `mp4`, `grid`, `contact_sheet`)
with some of these options; whatever it leaves out comes from here. A grid has
no options of its own: its size is the walk's (`walk.size`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OUTPUT_DEFAULTS: dict[str, dict[str, Any]] = {
    "gif": {"fps": 10, "rubber_band": False, "resize": None},
    "mp4": {"fps": 24, "rubber_band": False, "quality": 8},
    "grid": {},
    "contact_sheet": {"every": 10, "columns": 8, "tile": 128},
}


def output_options(kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` over the defaults of output `kind`; a None in `given` means the default.

    Raises:
        ValueError: `kind` is not an output kind, or `given` names an option it does not have.
    """
    if kind not in OUTPUT_DEFAULTS:
        raise ValueError(f"unknown output kinds: {kind}")
    defaults = OUTPUT_DEFAULTS[kind]
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"outputs.{kind}: unknown options {', '.join(sorted(unknown))}")
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}
