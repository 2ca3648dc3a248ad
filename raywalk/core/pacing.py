"""Perceptually even frames: measure a cheap first pass, then re-space the walk parameter.

Even steps in the walk parameter are not even steps in the picture: an
interpolation often holds one image for a while, then changes in a few
frames. DiffMorpher (CVPR 2024) renders a first pass at evenly spaced
parameters, adds up the distance between neighbouring images and inverts that
cumulative curve; AID (NeurIPS 2024) scores a sequence by the spread of its
neighbour distances. raywalk does both, per segment, so each prompt stays
pinned to its frame:

1. `first_pass_job(job)`: images at u_j = j / (M - 1) (M = pacing.samples per
   segment, ends shared), at the first-pass size and steps, with the job's noise
   averaged down (`first_pass_trajectory`).
2. `distances(images)`: d_j = D(image_j, image_j+1), by `image_distance`.
3. `PerceptualWarp.from_distances`: in segment k the cumulative distance
   C_k(t) through the samples t_m = m / (M - 1) is monotone; the warp is its
   inverse, t = C_k⁻¹(e · C_k(1)), a monotone cubic (PCHIP) through the points
   (C_k(t_m), t_m), so e = 0 and e = 1 stay the segment's ends. Frames evenly
   spaced in e then change the picture by equal amounts.
4. `raywalk.core.timing.walk_table(job, weights, warp)`: the final table.

`smoothness` and `max_jump` are AID's scores of a finished sequence.

The distance needs no downloaded weights (LPIPS would need AlexNet or VGG):
each image, as luminance and two colour-difference channels, is reduced by
area averaging to 64, 32 and 16 pixels on its long side; at each scale the
distance is the mean absolute difference of the three channels plus that of
the luminance gradients (x and y). Colour at coarse scales sees palette and
layout change; gradients see edges and texture move or appear, and ignore a
uniform brightness shift; L1 on features linear in the pixels adds up along a
path (a cross-fade from A to B by w costs w · D(A, B)), so the cumulative
distance means "how far the picture has gone". SSIM saturates for
dissimilar images and does not add up that way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from raywalk.core.job import DEFAULT_LATENT_CHANNELS, Job, Keyframe, Outputs, Walk, first_pass_height
from raywalk.core.kinds import WalkKind
from raywalk.core.limits import MAX_NAME
from raywalk.core.trajectory import Encodings, Trajectory

SCALES = (64, 32, 16)  # long side, in pixels, of each level the distance compares
# RGB -> luminance and two colour differences (ITU-R BT.601 YCbCr without offsets).
_OPPONENT = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def features(image: np.ndarray) -> list[np.ndarray]:
    """Per scale: (h, w, 5) float features (Y, Cb, Cr in [0, 1] units, then dY/dx and dY/dy)."""
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    levels = []
    for side in SCALES:
        scale = side / max(pil.size)
        size = (max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale)))
        small = np.asarray(pil.resize(size, Image.Resampling.BOX), dtype=np.float64) / 255.0
        ycc = small @ _OPPONENT.T
        gy, gx = np.gradient(ycc[..., 0]) if min(size) > 1 else (np.zeros(size[::-1]),) * 2
        levels.append(np.concatenate([ycc, gx[..., None], gy[..., None]], axis=-1))
    return levels


def feature_distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean over scales of the mean absolute feature difference (see the module docstring)."""
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b, strict=True)]))


def image_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The perceptual distance between two uint8 (H, W, 3) images (0 for equal images)."""
    return feature_distance(features(a), features(b))


def distances(images: Iterable[np.ndarray]) -> np.ndarray:
    """Distances between neighbours, d_j = D(image_j, image_j+1), holding one image's features at a time."""
    out: list[float] = []
    previous: list[np.ndarray] | None = None
    for image in images:
        current = features(image)
        if previous is not None:
            out.append(feature_distance(previous, current))
        previous = current
    return np.array(out)


def gini(values: np.ndarray) -> float:
    """Gini coefficient, sum_i sum_j |v_i - v_j| / (2 n² mean): 0 when all are equal, near 1 when one holds all.

    Computed from the sorted values v_(1) <= ... <= v_(n) as 2 sum_i i v_(i) / (n sum v) - (n + 1) / n.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(v), float(v.sum())
    if n == 0 or total == 0:
        return 0.0
    return float(2.0 * np.sum(np.arange(1, n + 1) * v) / (n * total) - (n + 1) / n)


def smoothness(d: np.ndarray) -> float:
    """AID's smoothness of a sequence: 1 - Gini(neighbour distances); 1 when every step changes the same."""
    return 1.0 - gini(d)


def max_jump(d: np.ndarray) -> float:
    """The largest neighbour distance over the mean one (1 for perfectly even steps)."""
    d = np.asarray(d, dtype=np.float64)
    mean = float(d.mean()) if len(d) else 0.0
    return float(d.max() / mean) if mean > 0 else 1.0


def sample_points(segments: int, samples: int) -> np.ndarray:
    """u of the first-pass images: j / (samples - 1) for j = 0 .. segments · (samples - 1)."""
    return np.arange(segments * (samples - 1) + 1) / (samples - 1)


@dataclass(frozen=True)
class PerceptualWarp:
    """t -> t' per segment so that equal steps in t are equal steps in the cumulative distance."""

    cumulative: np.ndarray  # (segments, samples): C_k(t_m), from 0

    @classmethod
    def from_distances(cls, d: np.ndarray, segments: int, samples: int) -> PerceptualWarp:
        """The warp from the first pass's neighbour distances (`segments · (samples - 1)` of them, in order).

        Raises:
            ValueError: a count of distances that does not fit, or negative or non-finite ones.
        """
        d = np.asarray(d, dtype=np.float64)
        if d.shape != (segments * (samples - 1),) or not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError(
                f"need {segments * (samples - 1)} finite non-negative distances "
                f"({segments} segments of {samples} samples), got shape {d.shape}"
            )
        steps = d.reshape(segments, samples - 1)
        return cls(np.concatenate([np.zeros((segments, 1)), np.cumsum(steps, axis=1)], axis=1))

    def __call__(self, segment: np.ndarray, t: np.ndarray) -> np.ndarray:
        """t' = C_k⁻¹(t · C_k(1)) for each frame's segment k; 0 and 1 map to themselves exactly."""
        from scipy.interpolate import PchipInterpolator  # scipy comes with librosa; only pacing needs it

        segment, t = np.asarray(segment), np.asarray(t, dtype=np.float64)
        out = t.copy()
        grid = np.linspace(0.0, 1.0, self.cumulative.shape[1])
        for k in np.unique(segment):
            c = self.cumulative[k]
            if c[-1] <= 0:  # no visible change at all: keep the even steps
                continue
            # A stretch without change would make C flat and its inverse jump; the tiny tilt crosses it evenly.
            c = (c / c[-1] + 1e-6 * grid) / (1 + 1e-6)
            mask = segment == k
            out[mask] = PchipInterpolator(c, grid)(t[mask])
        out = np.clip(out, 0.0, 1.0)
        out[t == 0], out[t == 1] = 0.0, 1.0
        return np.asarray(out)


def first_pass_job(job: Job) -> Job:
    """The first pass of a perceptually paced job, as a job: the same prompts, method and noise, evenly spaced
    (frame j at u = j / (samples - 1)), at the first-pass size and steps, with no outputs.

    Render it like any job (its chunks, the same renderer class); its frames in order go to `distances`.

    Raises:
        ValueError: the job is not perceptually paced.
    """
    if job.pacing is None:
        raise ValueError(f"job {job.name} is not perceptually paced (walk.pacing: perceptual)")
    p = job.pacing
    suffix = "-first-pass"
    return dataclasses.replace(
        job,
        name=job.name[: MAX_NAME - len(suffix)] + suffix,
        walk=Walk(
            kind=WalkKind.INTERPOLATE,
            frames=job.segments * (p.samples - 1) + 1,
            method=job.walk.method,
            keyframes=_first_pass_keyframes(job),
            init_image=job.walk.init_image,
        ),
        model=dataclasses.replace(job.model, width=p.size, height=first_pass_height(job.model, p.size), steps=p.steps),
        outputs=Outputs(),
        timing=None,
        pacing=None,
    )


def _first_pass_keyframes(job: Job) -> tuple[Keyframe, ...]:
    """The first pass's keyframes where the job's carry pictures (every `samples - 1` frames, linear, each
    with its picture): its images then start from the pictures as the job's frames do. Else none (even steps)."""
    if not any(kf.image is not None for kf in job.walk.keyframes):
        return ()
    assert job.pacing is not None
    step = job.pacing.samples - 1
    return tuple(Keyframe(frame=k * step, image=kf.image) for k, kf in enumerate(job.walk.keyframes))


def first_pass_trajectory(
    job: Job, keyframes: Encodings, channels: int = DEFAULT_LATENT_CHANNELS, pictures: np.ndarray | None = None
) -> Trajectory:
    """The inputs of the first pass's frames: its walk, with the noise of the full-size job averaged down;
    `channels`: the renderer's latent channels (4 for SD 1.x, 16 for SD3); `pictures`: the first-pass
    renderer's encodings of the job's pictures fitted to the first pass's size (a job with pictures)."""
    small = first_pass_job(job)
    return Trajectory(
        small, keyframes, latent_shape=small.latent(channels), noise_from=job.latent(channels), pictures=pictures
    )
