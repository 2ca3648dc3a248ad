"""Trajectories: frame index -> (text encoding, diffusion noise), pure numpy.

Every frame is a function of the job and its index alone: any range of frames
is computed on its own, in time proportional to the range, and is identical in
every process and on every machine. Random draws come from numpy generators
keyed by (seed, stream, index) — never by batch, chunk, worker or attempt.

The maths follows the keras.io tutorial "Walking through latent space with
Stable Diffusion"; configured like the tutorial, each walk gives its frames.

A prompt's encoding is one array (SD 1.x/2.x: a (77, D) context) or several
named parts (SD3: a (154, 4096) sequence and a (2048,) pooled vector): every
walk is applied to every part alike — lerp/slerp per part, the grid bilinear
per part, the text walk steps every part — and the noise takes the
renderer's latent shape (16 channels for SD3).

An interpolate walk may also be timed from data: `timing`, a table of one
walk parameter u per frame (`raywalk.core.timing.walk_table`: keyframes at given
frames, steps that follow a soundtrack, perceptually even pacing), computed
once before rendering. Frames are then a pure function of (job, table, index).

A walk may start from pictures (`Trajectory.starts`): the renderer encodes each
of `job.pictures` once (its VAE's mean latents, P_0 .. P_M-1) and a frame starts
from latents z at strength s in [0, 1] (0 keeps the picture, 1 ignores it):
its starting step is k = floor(steps x (1 - s)) (`start_step`, KerasHub's
`int(num_steps * (1.0 - strength))`), z is noised to step k with the frame's
own noise (fixed, per-frame, slerp, circle: the walk's, as above) and denoised
from step k to the last; k = 0 is a text-to-image frame, the noise alone.

- `walk.init_image` (any walk kind, a style lock): every frame has z = P_0 and
  the init image's strength.
- keyframe images (interpolate walks): keyframe k holds (z_k, s_k) = (its
  picture's latents, its strength), or (none, 1) without a picture. In segment
  k, at the frame's own t (the t its text moves with: eased, timed by keyframe
  times, music or perceptual pacing as above), s = (1 - t) s_k + t s_k+1, and
  z = slerp(z_k, z_k+1, t) where both keyframes have pictures, else the one
  picture there is (its strength runs to 1, so it dissolves into the prompt's
  own image, or grows out of it), else zeros (s = 1 all along: text alone).

The starts, like the encodings and the noise, depend on the frame number alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

import numpy as np

from raywalk.core.job import Job, Walk
from raywalk.core.kinds import CircleMode, Direction, Easing, Method, NoiseKind, WalkKind
from raywalk.core.starts import Starts, start_step

Encodings: TypeAlias = np.ndarray | dict[str, np.ndarray]
"""One array per prompt/frame (the contract's original form), or named parts, each with one leading row each."""


def select(encodings: Encodings, rows: np.ndarray | slice) -> Encodings:
    """The given rows of every part (or of the one array)."""
    if isinstance(encodings, dict):
        return {name: part[rows] for name, part in encodings.items()}
    return encodings[rows]


# Independent random streams under one seed (the second element of every key).
FIXED_NOISE, FRAME_NOISE, KEYFRAME_NOISE, CIRCLE_NOISE, WALK_DIRECTION = range(5)

EASINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    Easing.LINEAR: lambda t: t,
    Easing.EASE_IN_OUT: lambda t: t * t * (3.0 - 2.0 * t),  # smoothstep: still at both ends
    Easing.COSINE: lambda t: (1.0 - np.cos(np.pi * t)) / 2.0,
}


def normal(shape: tuple[int, ...], seed: int, stream: int, index: int = 0) -> np.ndarray:
    """A standard-normal float64 draw keyed by (seed, stream, index), the same everywhere."""
    return np.asarray(np.random.default_rng([seed, stream, index]).standard_normal(shape))


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """a + t (b - a), with one t per leading row."""
    t = _per_row(t, a)
    return np.asarray(a + t * (b - a))


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray, parallel: float = 0.9995) -> np.ndarray:
    """Spherical interpolation per leading row; falls back to lerp for nearly parallel rows."""
    flat_a = a.reshape(len(a), int(np.prod(a.shape[1:])))
    flat_b = b.reshape(len(b), int(np.prod(b.shape[1:])))
    dot = np.sum(flat_a * flat_b, axis=1) / (np.linalg.norm(flat_a, axis=1) * np.linalg.norm(flat_b, axis=1))
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), dot.shape)
    near = np.abs(dot) > parallel
    sin_theta = np.where(near, 1.0, np.sin(theta))
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / sin_theta)
    wb = np.where(near, t, np.sin(t * theta) / sin_theta)
    return np.asarray(_per_row(wa, a) * a + _per_row(wb, b) * b)


Mix = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _grid(corners: np.ndarray, p: dict[str, np.ndarray], mix: Mix) -> np.ndarray:
    """Bilinear path: top row corners[0] -> corners[1], bottom row corners[2] -> corners[3]."""
    n = len(p["row"])
    top = mix(np.repeat(corners[:1], n, 0), np.repeat(corners[1:2], n, 0), p["t_col"])
    bottom = mix(np.repeat(corners[2:3], n, 0), np.repeat(corners[3:4], n, 0), p["t_col"])
    return mix(top, bottom, p["t_row"])


def _per_row(t: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.asarray(t, dtype=np.float64).reshape((-1,) + (1,) * (like.ndim - 1))


def keyframe_segments(walk: Walk, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segment k and linear progress x of frames on a walk with keyframes at frames f_0 = 0 < f_1 < ... :

    for f_k <= i < f_k+1, segment k and x = (i - f_k) / (f_k+1 - f_k); the last frame is x = 1 of the
    last segment, so frame f_k is exactly prompt k.
    """
    f = np.array([kf.frame for kf in walk.keyframes])
    segment = np.clip(np.searchsorted(f, index, side="right") - 1, 0, len(f) - 2)
    return segment, (index - f[segment]) / (f[segment + 1] - f[segment])


def eased(walk: Walk, segment: np.ndarray, x: np.ndarray) -> np.ndarray:
    """t = ease(x) with each segment's easing: its keyframe's, or the walk's for every segment."""
    if not walk.keyframes:
        return EASINGS[walk.easing](x)
    names = np.array([kf.easing for kf in walk.keyframes])[segment]
    t = np.empty_like(x, dtype=np.float64)
    for name in set(names.tolist()):
        mask = names == name
        t[mask] = EASINGS[name](x[mask])
    return t


def check_table(table: np.ndarray, num_frames: int, segments: int) -> np.ndarray:
    """A walk-parameter table as float64, checked: one finite u per frame, non-decreasing from 0 to `segments`.

    Raises:
        ValueError: the table does not fit the walk.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.shape != (num_frames,) or not np.all(np.isfinite(table)):
        raise ValueError(f"timing table must hold {num_frames} finite values, one per frame, got {table.shape}")
    if table[0] != 0 or table[-1] != segments or np.any(np.diff(table) < 0):
        raise ValueError(f"timing table must run from 0 to {segments} without going back")
    return table


def block_mean(noise: np.ndarray, factor: int) -> np.ndarray:
    """(n, H, W, C) noise averaged in factor x factor blocks and scaled by `factor`: unit variance again
    (the mean of f² independent unit normals has variance 1 / f²), the same noise seen smaller."""
    n, h, w, c = noise.shape
    blocks = noise.reshape(n, h // factor, factor, w // factor, factor, c)
    return np.asarray(blocks.mean(axis=(2, 4)) * factor)


class Trajectory:
    """The frames of one job, given the text encodings of its prompts.

    `timing` (interpolate walks): the walk parameter u of every frame, from
    `raywalk.core.timing.walk_table`; frame i mixes prompts floor(u) and floor(u) + 1
    at t = u - floor(u) (the last frame: t = 1). Without it, frames follow the
    job's keyframes and easing, or are evenly spaced.

    `keyframes`: the prompts' encodings in job order, one (K, ...) array or a
    mapping of part name to (K, ...) arrays; `frames` gives encodings in the
    same form. `latent_shape`: the renderer's (h, w, channels), by default the
    job's (H/8, W/8, 4).

    `noise_from`: draw every noise at this larger latent shape and average it
    down to the job's (`block_mean`), so a small first pass sees the noise of
    the full-size frames (`raywalk.core.pacing.first_pass_trajectory`).

    `pictures`: float32 (M, h, w, c), the renderer's encodings of `job.pictures`
    in that order, for `starts` (a job without pictures takes none).

    Raises:
        ValueError: keyframes, table, noise shape or pictures that do not fit the job.
    """

    def __init__(
        self,
        job: Job,
        keyframes: np.ndarray | Mapping[str, np.ndarray],
        timing: np.ndarray | None = None,
        noise_from: tuple[int, int, int] | None = None,
        latent_shape: tuple[int, int, int] | None = None,
        pictures: np.ndarray | None = None,
    ):
        self._named = isinstance(keyframes, Mapping)
        parts = dict(keyframes) if isinstance(keyframes, Mapping) else {"": keyframes}
        if not parts:
            raise ValueError("keyframes hold no parts")
        for name, part in parts.items():
            part = np.asarray(part)
            if part.ndim < 2 or len(part) != len(job.prompts):
                label = f"keyframe part {name!r}" if self._named else "keyframes"
                raise ValueError(
                    f"{label} must be (K, ...) with K = {len(job.prompts)} prompts and at least one "
                    f"value per prompt, got {part.shape}"
                )
        if timing is not None and (job.walk.kind != WalkKind.INTERPOLATE or job.walk.loop):
            raise ValueError("a timing table times an interpolate walk that does not loop")
        self.job = job
        self.num_frames = job.num_frames
        self.latent_shape = latent_shape or job.latent_shape
        self._parts = {name: np.asarray(part).astype(np.float64) for name, part in parts.items()}
        self._table = None if timing is None else check_table(timing, job.num_frames, job.segments)
        self._mix = lerp if job.walk.method == Method.LERP else slerp
        self._ease = EASINGS[job.walk.easing]
        noise, shape = job.noise, noise_from or self.latent_shape
        self._noise_factor = shape[0] // self.latent_shape[0]
        if noise_from is not None and (
            shape[2] != self.latent_shape[2]
            or shape[:2] != tuple(self._noise_factor * side for side in self.latent_shape[:2])
        ):
            raise ValueError(f"noise_from {shape} is not a whole multiple of the latent shape {self.latent_shape}")
        self._noise_shape = shape
        self._pictures = None if pictures is None else self._checked_pictures(np.asarray(pictures))
        if noise.kind == NoiseKind.FIXED:
            self._fixed_noise = normal(shape, noise.seed, FIXED_NOISE)
        elif noise.kind == NoiseKind.SLERP:
            self._key_noise = np.stack([normal(shape, s, KEYFRAME_NOISE) for s in noise.seeds])
        elif noise.kind == NoiseKind.CIRCLE:
            self._circle = normal(shape, noise.seed, CIRCLE_NOISE, 0), normal(shape, noise.seed, CIRCLE_NOISE, 1)
        if job.walk.kind == WalkKind.TEXT_WALK:  # one direction per part, the i-th part's keyed by index i
            self._direction = {
                name: np.ones_like(part[0])
                if job.walk.direction == Direction.ONES
                else normal(part[0].shape, job.walk.direction_seed, WALK_DIRECTION, i)
                for i, (name, part) in enumerate(self._parts.items())
            }

    def frames(self, start: int, stop: int) -> tuple[Encodings, np.ndarray]:
        """Encodings (n, ...) per part and noise (n, h, w, c), float32, for frames [start, stop)."""
        index = self._range(start, stop)
        params = self._walk_params(index)
        encodings = {name: self._encodings(name, index, params).astype(np.float32) for name in self._parts}
        noise = self._noise(index, params)
        if self._noise_factor > 1:
            noise = block_mean(noise, self._noise_factor)
        return (encodings if self._named else encodings[""]), noise.astype(np.float32)

    def params(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Per-frame walk parameters (for the run index: how each frame was made); a job with pictures adds
        each frame's `strength` and `start_step`."""
        index = self._range(start, stop)
        params = self._walk_params(index)
        if self.job.pictures:
            strength = self._strength(params, len(index))
            params = {**params, "strength": strength, "start_step": start_step(strength, self.job.model.steps)}
        return params

    def starts(self, start: int, stop: int) -> Starts | None:
        """Where frames [start, stop) start from their pictures (see the module docstring); None for a job
        without pictures, whose frames start from their noise alone.

        Raises:
            ValueError: the job has pictures, and the trajectory was given no encodings of them.
        """
        if not self.job.pictures:
            return None
        if self._pictures is None:
            raise ValueError(f"job {self.job.name} starts from pictures: the trajectory needs their encodings")
        index = self._range(start, stop)
        params = self._walk_params(index)
        strength = self._strength(params, len(index))
        return Starts(
            latents=self._start_latents(self._pictures, params, len(index)).astype(np.float32),
            steps=start_step(strength, self.job.model.steps),
            strength=strength,
        )

    # -- the pictures ------------------------------------------------------------

    def _checked_pictures(self, pictures: np.ndarray) -> np.ndarray:
        wanted = (len(self.job.pictures), *self.latent_shape)
        if not self.job.pictures or pictures.shape != wanted:
            raise ValueError(f"pictures must be the {wanted} encodings of the job's pictures, got {pictures.shape}")
        return pictures.astype(np.float64)

    def _keyframe_pictures(self) -> tuple[list[int | None], np.ndarray]:
        """Each keyframe's picture (its row in `job.pictures`, or None) and strength (1 without a picture)."""
        rows = {picture: row for row, picture in enumerate(self.job.pictures)}
        keyframes = self.job.walk.keyframes
        which = [None if kf.image is None else rows[kf.image] for kf in keyframes]
        strength = np.array([1.0 if kf.image is None else kf.image.strength for kf in keyframes])
        return which, strength

    def _strength(self, p: dict[str, np.ndarray], n: int) -> np.ndarray:
        init = self.job.walk.init_image
        if init is not None:
            return np.full(n, init.strength, dtype=np.float64)
        _, strength = self._keyframe_pictures()
        seg, t = p["segment"], np.asarray(p["t"], dtype=np.float64)
        return np.asarray((1.0 - t) * strength[seg] + t * strength[seg + 1])

    def _start_latents(self, pictures: np.ndarray, p: dict[str, np.ndarray], n: int) -> np.ndarray:
        if self.job.walk.init_image is not None:
            return np.repeat(pictures[:1], n, axis=0)
        which, _ = self._keyframe_pictures()
        seg, t = p["segment"], np.asarray(p["t"], dtype=np.float64)
        out = np.zeros((n, *self.latent_shape), dtype=np.float64)
        for k in np.unique(seg).tolist():
            rows = seg == k
            a, b = which[k], which[k + 1]
            if a is not None and b is not None:
                count = int(rows.sum())
                out[rows] = slerp(
                    np.repeat(pictures[a : a + 1], count, 0), np.repeat(pictures[b : b + 1], count, 0), t[rows]
                )
            elif a is not None or b is not None:
                out[rows] = pictures[a if a is not None else b]
        return out

    # -- the walk --------------------------------------------------------------

    def _range(self, start: int, stop: int) -> np.ndarray:
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"frames [{start}, {stop}) outside the walk's {self.num_frames} frames")
        return np.arange(start, stop)

    def _walk_params(self, index: np.ndarray) -> dict[str, np.ndarray]:
        walk, n = self.job.walk, self.num_frames
        if walk.kind == WalkKind.INTERPOLATE and self._table is not None:
            u = self._table[index]
            segment = np.minimum(np.floor(u), self.job.segments - 1)
            return {"segment": segment.astype(np.int32), "t": u - segment}
        if walk.kind == WalkKind.INTERPOLATE and walk.keyframes:
            segment, x = keyframe_segments(walk, index)
            return {"segment": segment.astype(np.int32), "t": eased(walk, segment, x)}
        if walk.kind == WalkKind.INTERPOLATE:
            # Global parameter u runs over the segments between consecutive prompts;
            # a path that ends on its last prompt includes it, a loop stops one step short
            # of its first, so joints and the loop's seam are never repeated.
            segments = len(self.job.prompts) if walk.loop else len(self.job.prompts) - 1
            span = n if walk.loop else max(n - 1, 1)
            segment = np.minimum(index * segments // span, segments - 1)
            t = index * segments / span - segment
            return {"segment": segment.astype(np.int32), "t": self._ease(t)}
        if walk.kind == WalkKind.GRID:
            side = walk.size
            row, col = index // side, index % side
            span = max(side - 1, 1)
            return {
                "row": row.astype(np.int32),
                "col": col.astype(np.int32),
                "t_row": self._ease(row / span),
                "t_col": self._ease(col / span),
            }
        if walk.kind == WalkKind.TEXT_WALK:
            return {"offset": index * walk.step_size}
        if walk.mode == CircleMode.TUTORIAL:  # noise_circle: pi * linspace(0, 2, N), first frame = last
            theta = np.pi * 2.0 * index / max(n - 1, 1)
        else:
            theta = 2.0 * np.pi * index / n
        return {"theta": theta}

    def _encodings(self, part: str, index: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        keys, kind = self._parts[part], self.job.walk.kind
        if kind == WalkKind.INTERPOLATE:
            seg = p["segment"]
            return self._mix(keys[seg], keys[(seg + 1) % len(keys)], p["t"])
        if kind == WalkKind.GRID:
            return _grid(keys, p, self._mix)
        if kind == WalkKind.TEXT_WALK:
            return np.asarray(keys[0] + _per_row(p["offset"], keys[:1]) * self._direction[part])
        return np.repeat(keys[:1], len(index), axis=0)

    # -- the noise ------------------------------------------------------------

    def _noise(self, index: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        noise, shape = self.job.noise, self._noise_shape
        if noise.kind == NoiseKind.FIXED:
            return np.repeat(self._fixed_noise[None], len(index), axis=0)
        if noise.kind == NoiseKind.PER_FRAME:
            draws = [normal(shape, noise.seed, FRAME_NOISE, int(i)) for i in index]
            return np.array(draws, dtype=np.float64).reshape((len(index),) + shape)
        if noise.kind == NoiseKind.SLERP:  # along the same path as the encodings, always spherically
            keys = self._key_noise
            if self.job.walk.kind == WalkKind.GRID:
                return _grid(keys, p, slerp)
            seg = p["segment"]
            return slerp(keys[seg], keys[(seg + 1) % len(keys)], p["t"])
        x, y = self._circle
        theta = _per_row(p["theta"], x[None])
        return np.asarray(np.cos(theta) * x + np.sin(theta) * y)
