"""Walk timing, pure numpy: keyframes pinned at frames, steps that follow the music, one table for the walk.

The walk parameter of an interpolate walk is u in [0, S] (S segments between
K = S + 1 prompts): frame i mixes prompts floor(u) and floor(u) + 1 at
t = u - floor(u). `walk_table` computes u for every frame, in three stages:

1. **progress**: pins hold u fixed at some frames (each keyframe k at its
   frame f_k with u = k; without keyframes the walk's ends, u = 0 and u = S).
   Between two pins a and b, u advances by steps proportional to the weight
   w_j of each frame j (all 1 without a soundtrack):
   ``u_i = u_a + (u_b - u_a) · (w_a+1 + ... + w_i) / (w_a+1 + ... + w_b)``.
2. **easing**: per segment, x = u - floor(u) becomes t = ease(x).
3. **warp** (optional): t = warp(segment, t), e.g. `raywalk.core.pacing.PerceptualWarp`.

With a soundtrack the weights come from its percussive onset envelope
(`raywalk.outputs.audio.envelope`): `frame_energy` averages it over each video frame,
`release` smooths it, `step_weights` adds the floor. Each is a function of
arrays, so it can be tested without audio.

Integration: when `needs_table(job)`, the driver computes the table once,
before dispatch, with `job_table` (from the soundtrack's envelope and the
first pass's distances), stores it with the run, and every worker passes it
to `Trajectory(job, keys, timing=table)`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from raywalk.core.job import Job, Timing
from raywalk.core.kinds import WalkKind
from raywalk.core.pacing import PerceptualWarp
from raywalk.core.trajectory import eased


class Warp(Protocol):
    """Stage 3: each frame's eased t in [0, 1] within its segment -> the t it renders at (0 and 1 fixed)."""

    def __call__(self, segment: np.ndarray, t: np.ndarray) -> np.ndarray: ...


def frame_energy(envelope: np.ndarray, rate: float, fps: int, num_frames: int) -> np.ndarray:
    """The envelope averaged over each video frame's time: frame k shows at k / fps and owns
    [(k - 1/2) / fps, (k + 1/2) / fps), so a beat moves the frame nearest to it.

    Value j of `envelope` is taken to hold over [(j - 1/2) / rate, (j + 1/2) / rate). The mean
    over a frame is the difference of the running integral at the frame's two edges, divided by
    its length; both edges are computed from k / fps, never by counting hops, so nothing drifts
    however long the track. Time before the envelope's first value or after its last counts as silence.

    Raises:
        ValueError: an empty envelope or a rate, fps or frame count that is not positive.
    """
    envelope = np.asarray(envelope, dtype=np.float64)
    if envelope.ndim != 1 or not len(envelope) or rate <= 0 or fps <= 0 or num_frames <= 0:
        raise ValueError("frame_energy needs a non-empty 1-D envelope and a positive rate, fps and frame count")
    edges_in = (np.arange(len(envelope) + 1) - 0.5) / rate  # sample j spans edges_in[j] .. edges_in[j + 1]
    integral = np.concatenate([[0.0], np.cumsum(envelope) / rate])
    edges_out = (np.arange(num_frames + 1) - 0.5) / fps
    at_edges = np.interp(edges_out, edges_in, integral)  # flat (no energy) before the start and past the end
    return np.asarray(np.diff(at_edges) * fps)


def release(energy: np.ndarray, seconds: float, fps: int) -> np.ndarray:
    """Each beat's energy dying away over the next frames: y_k = max(x_k, a · y_k-1), a = exp(-1 / (seconds · fps)).

    An envelope follower with instant attack and exponential release (as on an
    audio compressor), rather than a symmetric blur or a sum: the motion starts
    on the beat, dies away after it, never leads it, and the largest step stays
    on the beat's frame even when its energy falls into two frames. `seconds` 0
    leaves the energy as it is.
    """
    energy = np.asarray(energy, dtype=np.float64)
    if seconds <= 0:
        return energy
    a = np.exp(-1.0 / (seconds * fps))
    out = np.empty_like(energy)
    level = 0.0
    for k, x in enumerate(energy):  # recursive, so a loop: numpy has no running max with decay
        level = max(x, a * level)
        out[k] = level
    return out


def step_weights(energy: np.ndarray, floor: float) -> np.ndarray:
    """w_k = floor · mean(e) + (1 - floor) · e_k: steps follow the energy, and never fall below
    `floor` times the average step, so quiet passages still move (floor 1: even steps; silence: even steps).

    Raises:
        ValueError: floor outside [0, 1] or negative energy.
    """
    energy = np.asarray(energy, dtype=np.float64)
    if not 0 <= floor <= 1 or np.any(energy < 0):
        raise ValueError("step_weights needs a floor in [0, 1] and non-negative energy")
    mean = float(energy.mean()) if len(energy) else 0.0
    if mean == 0:
        return np.ones_like(energy)
    return floor * mean + (1.0 - floor) * energy


def music_weights(timing: Timing, envelope: np.ndarray, rate: float, num_frames: int) -> np.ndarray:
    """The step weight of every frame from a soundtrack's onset envelope, with the job's smoothing and floor."""
    energy = frame_energy(envelope, rate, timing.fps, num_frames)
    return step_weights(release(energy, timing.smoothing, timing.fps), timing.floor)


def pins(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """Frames where u is pinned, and u there: each keyframe k at its frame (u = k), or the walk's ends."""
    if job.walk.keyframes:
        return np.array([kf.frame for kf in job.walk.keyframes]), np.arange(len(job.walk.keyframes), dtype=np.float64)
    return np.array([0, job.num_frames - 1]), np.array([0.0, float(job.segments)])


def progress(job: Job, weights: np.ndarray | None = None) -> np.ndarray:
    """Stage 1: u of every frame before easing, pinned at `pins(job)` and advancing by `weights` between pins.

    Raises:
        ValueError: weights that are not one non-negative number per frame.
    """
    n = job.num_frames
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be {n} finite non-negative values, one per frame")
    frames, values = pins(job)
    index = np.arange(n)
    span = np.clip(np.searchsorted(frames, index, side="right") - 1, 0, len(frames) - 2)
    a, b = frames[span], frames[span + 1]
    run = np.concatenate([[0.0], np.cumsum(w[1:])])  # run[i] = w_1 + ... + w_i: the step into frame j is w_j
    total = run[b] - run[a]
    # A span without weight (silence with floor 0) moves evenly rather than not at all.
    share = np.where(total > 0, (run[index] - run[a]) / np.where(total > 0, total, 1.0), (index - a) / (b - a))
    u = values[span] + (values[span + 1] - values[span]) * share
    u[frames] = values  # exact at the pins
    return np.asarray(u)


def walk_table(job: Job, weights: np.ndarray | None = None, warp: Warp | None = None) -> np.ndarray:
    """The walk parameter u of every frame (progress, easing, warp; see the module docstring).

    Pass it as `Trajectory(job, keys, timing=table)`. Without weights and warp
    it gives the parameters the job gives alone (its keyframes and easing).

    Raises:
        ValueError: not an interpolate walk of 2 or more frames ending on its last prompt, or weights that
            do not fit it.
    """
    if job.walk.kind != WalkKind.INTERPOLATE or job.walk.loop or job.num_frames < 2:
        raise ValueError("walk_table times an interpolate walk of at least 2 frames that does not loop")
    u = progress(job, weights)
    segment = np.minimum(np.floor(u), job.segments - 1)
    t = eased(job.walk, segment.astype(np.intp), u - segment)
    if warp is not None:
        t = warp(segment.astype(np.intp), t)
    return np.asarray(segment + t)


def needs_table(job: Job) -> bool:
    """Whether frames need a table measured before rendering: a soundtrack or perceptual pacing.
    (Keyframes alone do not: `Trajectory` places them from the job.)"""
    return (job.timing is not None and job.timing.audio is not None) or job.pacing is not None


def job_table(
    job: Job, envelope: tuple[np.ndarray, float] | None = None, first_pass_distances: np.ndarray | None = None
) -> np.ndarray:
    """The walk table of a job that `needs_table`, from what was measured before rendering.

    Args:
        envelope: `raywalk.outputs.audio.envelope(job's soundtrack)`, (values, rate), when the job has timing.audio.
        first_pass_distances: `raywalk.core.pacing.distances(images)` of the first pass's frames in order
            (`raywalk.core.pacing.first_pass_job`), when the job has walk.pacing: perceptual.

    Raises:
        ValueError: a measurement the job needs is missing, or one it does not use is given.
    """
    has_audio = job.timing is not None and job.timing.audio is not None
    if (envelope is not None) != has_audio or (first_pass_distances is not None) != (job.pacing is not None):
        raise ValueError(
            f"job {job.name} needs "
            + (
                " and ".join(
                    ["the soundtrack's envelope"] * has_audio
                    + ["the first pass's distances"] * (job.pacing is not None)
                )
                or "no measurement"
            )
        )
    weights = None
    if envelope is not None and job.timing is not None:
        weights = music_weights(job.timing, envelope[0], envelope[1], job.num_frames)
    warp = None
    if first_pass_distances is not None and job.pacing is not None:
        warp = PerceptualWarp.from_distances(first_pass_distances, job.segments, job.pacing.samples)
    return walk_table(job, weights, warp)
