"""A renderer that spends a fixed time per frame, as a GPU would, for pipeline benchmarks.

Its images are smooth, like real renders, so PNG encoding costs what it does in a real run.
"""

from __future__ import annotations

import time

import numpy as np


class TimedRenderer:
    def __init__(
        self,
        width: int,
        height: int,
        steps: int = 1,
        guidance_scale: float = 7.5,
        weights: str = "random",
        precision: str = "float32",
        batch_size: int = 1,
        seconds_per_frame: float = 0.5,
    ):
        self.latent_shape = (height // 8, width // 8, 4)
        self.seconds_per_frame = seconds_per_frame
        self.random_weights = True

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        return np.random.default_rng(0).standard_normal((len(prompts), 77, 768)).astype(np.float32)

    def render(self, encodings: np.ndarray, noise: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        rgb = np.tanh(noise[..., :3] + encodings.mean(axis=(1, 2))[:, None, None, None])
        images = (127.5 + 120 * rgb).astype(np.uint8).repeat(8, axis=1).repeat(8, axis=2)
        time.sleep(max(0.0, self.seconds_per_frame * len(noise) - (time.perf_counter() - started)))
        return images
