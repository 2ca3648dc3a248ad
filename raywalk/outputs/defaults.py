"""Filling an output's options from the one table of defaults (`raywalk.core.output_table`).

A job's `outputs` section names kinds (`gif`, `mp4`, `grid`, `contact_sheet`)
with some of these options; whatever it leaves out comes from here. A grid has
no options of its own: its size is the walk's (`walk.size`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raywalk.core.output_table import OUTPUT_DEFAULTS


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
