"""Validation of the walk section: its kind, length, keyframes and shape."""

from __future__ import annotations

import dataclasses
from typing import Any

from raywalk.core.job import Keyframe, Timing, Walk
from raywalk.core.kinds import ARTICLES, WALK_KEYS, CircleMode, Direction, Easing, Method, PacingMode, WalkKind
from raywalk.core.limits import MAX_FRAMES, MAX_GRID, MAX_SEED, MAX_STEP_SIZE
from raywalk.core.validate.fields import type_name
from raywalk.core.validate.picture import PICTURE_KEYS, PictureRules

__all__ = ["WalkRules"]

PROMPTS_WANTED = {
    WalkKind.INTERPOLATE: "at least 2",
    WalkKind.GRID: "exactly 4",
    WalkKind.TEXT_WALK: "exactly 1",
    WalkKind.NOISE_CIRCLE: "exactly 1",
}


class WalkRules(PictureRules):
    """The `walk` section, which depends on the prompts and the timing."""

    def walk(self, data: Any, prompts: tuple[str, ...], timing: Timing | None) -> tuple[Walk, tuple[int | None, ...]]:
        """The walk, and the noise seed each keyframe gives (None where it gives none)."""
        w = self.section(data, "walk", tuple(f.name for f in dataclasses.fields(Walk)))
        kind = self.choice(w, "kind", "walk", WalkKind.INTERPOLATE, WalkKind)
        wanted = PROMPTS_WANTED[kind]
        count_ok = {WalkKind.INTERPOLATE: len(prompts) >= 2, WalkKind.GRID: len(prompts) == 4}.get(
            kind, len(prompts) == 1
        )
        if not count_ok:
            self.fail("prompts", f"{ARTICLES[kind]} {kind} walk needs {wanted} prompts, got {len(prompts)}")
        relevant = WALK_KEYS[kind]
        for key in w:
            if key not in relevant:
                self.fail(
                    f"walk.{key}",
                    f"does not apply to {ARTICLES[kind]} {kind} walk (its keys: {', '.join(sorted(relevant))})",
                )
        if timing is not None and kind != WalkKind.INTERPOLATE:
            self.fail("timing", f"times an interpolate walk, not {ARTICLES[kind]} {kind} walk")
        easing = self.choice(w, "easing", "walk", Easing.LINEAR, Easing)
        loop = self.boolean(w, "loop", "walk", False)
        pacing = self.choice(w, "pacing", "walk", PacingMode.UNIFORM, PacingMode)
        if loop and ("keyframes" in w or timing is not None or pacing != PacingMode.UNIFORM):
            self.fail(
                "walk.loop",
                "a looping walk takes no keyframes, timing or perceptual pacing "
                "(end on the first prompt again instead)",
            )
        keyframes: tuple[Keyframe, ...] = ()
        seeds: tuple[int | None, ...] = ()
        if kind == WalkKind.GRID:
            size, frames = self.integer(w, "size", "walk", 0, minimum=1, maximum=MAX_GRID), 0
            if "size" not in w:
                self.fail("walk.size", "missing: a grid walk needs its side length n (n x n frames)")
        else:
            size = 0
            frames = self.frames(w, kind, timing)
            if "keyframes" in w:
                keyframes, seeds = self.keyframes(w["keyframes"], prompts, easing, timing, frames or None)
                frames = keyframes[-1].frame + 1
        init_image = None
        if "init_image" in w:
            init = self.section(w["init_image"], "walk.init_image", PICTURE_KEYS)
            if "image" not in init:
                self.fail("walk.init_image.image", "missing: the picture every frame starts from")
            init_image = self.picture(init, "walk.init_image", strength_required=True)
            if any(kf.image is not None for kf in keyframes):
                self.fail("walk.init_image", "a walk starts from an init_image or from keyframe images, not both")
        for i, prompt in enumerate(prompts):
            if not prompt.strip() and (i >= len(keyframes) or keyframes[i].image is None):
                self.fail(f"prompts[{i}]", 'is empty: a prompt may be "" only at a keyframe with an image')
        walk = Walk(
            kind=kind,
            frames=frames,
            size=size,
            method=self.choice(w, "method", "walk", Method.LERP, Method),
            easing=easing,
            loop=loop,
            step_size=self.number(w, "step_size", "walk", 0.005, minimum=-MAX_STEP_SIZE, maximum=MAX_STEP_SIZE),
            direction=self.choice(w, "direction", "walk", Direction.ONES, Direction),
            direction_seed=self.integer(w, "direction_seed", "walk", 0, minimum=0, maximum=MAX_SEED),
            mode=self.choice(w, "mode", "walk", CircleMode.SEAMLESS, CircleMode),
            keyframes=keyframes,
            pacing=pacing,
            init_image=init_image,
        )
        return walk, seeds

    def frames(self, w: dict[str, Any], kind: WalkKind, timing: Timing | None) -> int:
        """walk.frames: as given, or the soundtrack's length in frames; 0 if only keyframes can tell."""
        audio = timing.frame(timing.duration) if timing is not None and timing.duration is not None else None
        if "frames" not in w:
            if audio is None and "keyframes" not in w:
                self.fail("walk.frames", f"missing: {ARTICLES[kind]} {kind} walk needs a frame count")
            return audio or 0
        frames = self.integer(w, "frames", "walk", 0, minimum=1, maximum=MAX_FRAMES)
        if audio is not None and frames != audio:
            assert timing is not None and timing.duration is not None
            self.fail(
                "walk.frames",
                f"is {frames}, but timing.audio lasts {timing.duration:.3f} s, {audio} frames "
                f"at {timing.fps} fps (leave walk.frames out)",
            )
        return frames

    def keyframes(
        self, data: Any, prompts: tuple[str, ...], easing: Easing, timing: Timing | None, frames: int | None
    ) -> tuple[tuple[Keyframe, ...], tuple[int | None, ...]]:
        """walk.keyframes: one entry per prompt at increasing frames, the first at 0, the last the walk's
        last frame (`frames - 1` when walk.frames or the soundtrack gives the length; then it may be left out)."""
        last_frame = frames - 1 if frames is not None else None
        if not isinstance(data, list) or len(data) != len(prompts):
            self.fail(
                "walk.keyframes", f"must be a list of {len(prompts)} entries, one per prompt, got {type_name(data)}"
            )
        keyframes: list[Keyframe] = []
        seeds: list[int | None] = []
        last = len(data) - 1
        for k, entry in enumerate(data):
            where = f"walk.keyframes[{k}]"
            e = self.section(entry, where, ("at", "seconds", "easing", "seed", *PICTURE_KEYS))
            seconds: float | None = None
            if "at" in e and "seconds" in e:
                self.fail(where, "give its position as `at` (a frame) or `seconds`, not both")
            if "at" in e:
                frame = self.integer(e, "at", where, 0, minimum=0, maximum=MAX_FRAMES - 1)
            elif "seconds" in e:
                if timing is None:
                    self.fail(f"{where}.seconds", "needs timing.fps to turn seconds into frames")
                seconds = self.number(e, "seconds", where, 0.0, minimum=0, maximum=(MAX_FRAMES - 1) / timing.fps)
                frame = timing.frame(seconds)
            elif k == 0:
                frame = 0
            elif k == last and last_frame is not None:
                frame = last_frame
            else:
                self.fail(
                    where,
                    "needs its position: `at: FRAME` or `seconds: S` (only the first, at 0, and the "
                    "last, when walk.frames or timing.audio gives the length, may leave it out)",
                )
            shown = f"frame {frame}" + (f" ({seconds:g} s)" if seconds is not None else "")
            if k == 0 and frame != 0:
                self.fail(where, f"the first keyframe starts the walk: it must be at frame 0, got {shown}")
            if k > 0 and frame <= keyframes[-1].frame:
                self.fail(where, f"must come after keyframe {k - 1} (frame {keyframes[-1].frame}), got {shown}")
            if k == last and last_frame is not None and frame != last_frame:
                self.fail(
                    where, f"the last keyframe ends the walk: it must be at its last frame, {last_frame}, got {shown}"
                )
            if k == last and "easing" in e:
                self.fail(f"{where}.easing", "the last keyframe ends the walk: no segment follows it to ease")
            keyframes.append(
                Keyframe(
                    frame=frame,
                    seconds=seconds,
                    easing=self.choice(e, "easing", where, easing, Easing),
                    image=self.picture(e, where, strength_required=False),
                )
            )
            seeds.append(self.integer(e, "seed", where, 0, minimum=0, maximum=MAX_SEED) if "seed" in e else None)
        return tuple(keyframes), tuple(seeds)
