"""Validation of the assembled outputs: each kind's options, filled from `OUTPUT_DEFAULTS`, and their sizes."""

from __future__ import annotations

from typing import Any

from raywalk.core.job import Model, Outputs, Timing, Walk
from raywalk.core.kinds import OutputKind, WalkKind
from raywalk.core.limits import (
    MAX_COLUMNS,
    MAX_FPS,
    MAX_FRAMES,
    MAX_OUTPUT_SIDE,
    MAX_SHEET_PIXELS,
    MAX_TILE,
)
from raywalk.core.output_table import output_defaults
from raywalk.core.validate.fields import Fields, short

__all__ = ["OutputRules"]


class OutputRules(Fields):
    """The `outputs` section, which depends on the walk, the model and the timing."""

    def outputs(self, data: Any, walk: Walk, model: Model, timing: Timing | None) -> Outputs:
        o = self.section(data, "outputs", (*OutputKind, "preview_every"))
        files: dict[str, dict[str, Any]] = {}
        for kind in OutputKind:
            if kind not in o:
                continue
            if kind == OutputKind.GRID and walk.kind != WalkKind.GRID:
                self.fail("outputs.grid", f"a grid image needs a grid walk, not {walk.kind}")
            defaults = output_defaults(kind, timing.fps if timing else None)
            opts = self.section(o[kind], f"outputs.{kind}", tuple(defaults))
            merged = {**defaults, **opts}
            where = f"outputs.{kind}"
            maxima = {"fps": MAX_FPS, "every": MAX_FRAMES, "columns": MAX_COLUMNS, "tile": MAX_TILE}
            for key, maximum in maxima.items():
                if key in merged:
                    merged[key] = self.integer(merged, key, where, 0, minimum=1, maximum=maximum)
            if "rubber_band" in merged:
                merged["rubber_band"] = self.boolean(merged, "rubber_band", where, False)
            if "quality" in merged:
                merged["quality"] = self.number(merged, "quality", where, 8, minimum=0)
                if merged["quality"] > 10:
                    self.fail(f"{where}.quality", f"must be between 0 and 10, got {merged['quality']}")
            if merged.get("resize") is not None:
                size = merged["resize"]
                if (
                    not isinstance(size, list)
                    or len(size) != 2
                    or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
                ):
                    self.fail(f"{where}.resize", f"must be [width, height] in pixels, got {short(size)}")
                if max(size) > MAX_OUTPUT_SIDE:
                    self.fail(f"{where}.resize", f"sides must be at most {MAX_OUTPUT_SIDE} pixels, got {size}")
                merged["resize"] = list(size)
            self.image_size(kind, merged, walk, model)
            if kind == OutputKind.MP4 and timing is not None:
                self.mp4_timing(merged, timing)
            files[kind.value] = merged
        preview_every = self.integer(o, "preview_every", "outputs", 0, minimum=0, maximum=MAX_FRAMES)
        return Outputs(files=files, preview_every=preview_every)

    def mp4_timing(self, options: dict[str, Any], timing: Timing) -> None:
        """A timed walk's MP4 plays at timing.fps, forwards: frame k at k / fps, with its soundtrack."""
        if options["fps"] != timing.fps:
            self.fail(
                "outputs.mp4.fps",
                f"must equal timing.fps ({timing.fps}) so that frame k shows at k / fps, got {options['fps']}",
            )
        if options["rubber_band"] and timing.audio:
            self.fail(
                "outputs.mp4.rubber_band", "a soundtrack does not play backwards: no rubber band with timing.audio"
            )

    def image_size(self, kind: str, options: dict[str, Any], walk: Walk, model: Model) -> None:
        """Refuse a grid or contact sheet too large to hold in memory."""
        frames = walk.size**2 if walk.kind == WalkKind.GRID else walk.frames
        if kind == OutputKind.GRID:
            pixels = walk.size**2 * model.width * model.height
        elif kind == OutputKind.CONTACT_SHEET:
            tiles = -(-frames // options["every"])
            rows = -(-tiles // options["columns"])
            tile_height = max(1, round(options["tile"] * model.height / model.width))
            pixels = options["columns"] * options["tile"] * rows * tile_height
        else:
            return
        if pixels > MAX_SHEET_PIXELS:
            self.fail(
                f"outputs.{kind}",
                f"would be a {pixels / 1e6:,.0f}-megapixel image, more than "
                f"{MAX_SHEET_PIXELS / 1e6:,.0f}"
                + (" (raise `every` or lower `tile`)" if kind != OutputKind.GRID else ""),
            )
