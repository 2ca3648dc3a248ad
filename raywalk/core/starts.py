"""Where a frame starts when its walk starts from pictures: the starting step of a strength, and the rows
`raywalk.core.trajectory.Trajectory.starts` gives the renderer (see that module's docstring for the maths)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Starts:
    """Where frames start from a picture (`Trajectory.starts`): one row each."""

    latents: np.ndarray  # float32 (n, h, w, c): the latents noised to each frame's starting step
    steps: np.ndarray  # int32 (n,): the starting step, in [0, model.steps]; 0 starts from the noise alone
    strength: np.ndarray  # float64 (n,): in [0, 1], 0 keeps the picture, 1 ignores it


def start_step(strength: np.ndarray | float, steps: int) -> np.ndarray:
    """The starting step of frames at `strength` in a walk of `steps` steps: floor(steps x (1 - strength)),
    exactly KerasHub's `int(num_steps * (1.0 - strength))` (the same float64 product, truncated)."""
    return np.floor(steps * (1.0 - np.asarray(strength, dtype=np.float64))).astype(np.int32)
