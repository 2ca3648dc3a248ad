"""Validation of walk time (the timing section and its soundtrack) and of perceptual pacing's first pass."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from raywalk.core.job import Model, Noise, Pacing, Timing, Walk, first_pass_height
from raywalk.core.kinds import NoiseKind, PacingMode
from raywalk.core.limits import MAX_FPS, MAX_FRAMES, MAX_PACING_SAMPLES, MAX_SMOOTHING, MAX_STEPS
from raywalk.core.validate.fields import Fields, short
from raywalk.errors import AudioError

__all__ = ["TimingRules"]


class TimingRules(Fields):
    """The `timing` section (its soundtrack read by `probe`, where the data does not record it) and `pacing`."""

    def timing(self, data: Any) -> Timing | None:
        if data is None:
            return None
        t = self.section(data, "timing", tuple(f.name for f in dataclasses.fields(Timing)))
        if "fps" not in t:
            self.fail("timing.fps", "missing: timing needs the frames per second of the walk")
        fps = self.integer(t, "fps", "timing", 0, minimum=1, maximum=MAX_FPS)
        if "audio" not in t:
            for key in t:
                if key != "fps":
                    self.fail(f"timing.{key}", "applies only with timing.audio")
            return Timing(fps=fps)
        audio = self.string(t, "audio", "timing", "")
        duration = (
            self.number(t, "duration", "timing", 0.0, minimum=0, exclusive=True, maximum=MAX_FRAMES / fps)
            if "duration" in t
            else None
        )
        sha256 = self.string(t, "sha256", "timing", "") if "sha256" in t else None
        if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
            self.fail("timing.sha256", f"must be 64 lowercase hexadecimal digits, got {short(sha256)}")
        if duration is None or sha256 is None:  # a run manifest records both; a job file is checked against the file
            if self.probe is None:
                self.fail(
                    "timing.audio",
                    f"{audio}: its duration and sha256 are not given, and nothing here reads the soundtrack "
                    "(load the job with raywalk.load_job or raywalk.job_from_dict, which do)",
                )
            try:
                info = self.probe(Path(self.source).parent / audio)
            except AudioError as exc:
                self.fail("timing.audio", str(exc))
            if sha256 is not None and sha256 != info.sha256:
                self.fail("timing.sha256", f"is not that of {audio} ({info.sha256[:12]}...)")
            if duration is not None and duration > info.duration:
                self.fail("timing.duration", f"is {duration:g} s, but {audio} lasts only {info.duration:.3f} s")
            duration, sha256 = duration or info.duration, info.sha256
        timing = Timing(
            fps=fps,
            audio=audio,
            smoothing=self.number(t, "smoothing", "timing", 0.1, minimum=0, maximum=MAX_SMOOTHING),
            floor=self.number(t, "floor", "timing", 0.2, minimum=0, maximum=1),
            duration=duration,
            sha256=sha256,
        )
        frames = timing.frame(duration)
        if not 2 <= frames <= MAX_FRAMES:
            self.fail(
                "timing.audio", f"{duration:.3f} s at {fps} fps is {frames} frames; a walk has 2 to {MAX_FRAMES:,}"
            )
        return timing

    def pacing(self, data: Any, walk: Walk, noise: Noise, model: Model) -> Pacing | None:
        if walk.pacing != PacingMode.PERCEPTUAL:
            if data is not None:
                self.fail("pacing", "first-pass settings apply only to walk.pacing: perceptual")
            return None
        if walk.frames < 2:
            self.fail("walk.pacing", "perceptual pacing spaces at least 2 frames")
        if noise.kind == NoiseKind.PER_FRAME:
            self.fail(
                "walk.pacing",
                "per_frame noise changes the picture at every frame by itself; perceptual "
                "pacing cannot even that out (use fixed or slerp noise)",
            )
        p = self.section(data, "pacing", tuple(f.name for f in dataclasses.fields(Pacing)))
        default_size = 256 if first_pass_height(model, 256) else model.width
        size = self.integer(p, "size", "pacing", default_size, minimum=64, maximum=model.width)
        if not first_pass_height(model, size):
            self.fail(
                "pacing.size",
                f"must be model.width ({model.width}) divided by a whole factor f that also "
                f"divides model.height ({model.height}) into a multiple of 64 (the first pass averages the "
                f"job's noise down in f x f blocks), got {size}",
            )
        return Pacing(
            samples=self.integer(p, "samples", "pacing", 9, minimum=2, maximum=MAX_PACING_SAMPLES),
            steps=self.integer(p, "steps", "pacing", min(10, model.steps), minimum=1, maximum=MAX_STEPS),
            size=size,
        )
