"""A fast, deterministic stand-in for a Stable Diffusion renderer (tests and Ray tests).

Import path for job files: ``doubles:FakeRenderer`` (conftest puts tests/ on
PYTHONPATH, so Ray workers find it too).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from raywalk.renderers.contract import RendererError


class TextOnlyRenderer:
    """Renderer contract without a model: images are a fixed projection of encodings and noise.

    A frame's pixels depend only on its own encoding and noise (never on the batch
    it is rendered in), so re-rendering a frame gives the same bytes. It cannot start
    from pictures (no `encode_images`): `FakeRenderer` can.
    """

    def __init__(
        self,
        width: int = 64,
        height: int = 64,
        steps: int = 1,
        guidance_scale: float = 7.5,
        weights: str = "random",
        precision: str = "auto",
        batch_size: int = 1,
        dim: int = 768,
        seconds_per_frame: float = 0.0,
    ) -> None:
        self.width, self.height, self.batch_size, self.dim, self.steps = width, height, batch_size, dim, steps
        self.seconds_per_frame = seconds_per_frame
        self.latent_shape = (height // 8, width // 8, 4)
        self.random_weights = True
        self.calls = 0  # render calls, for tests that count work
        # A fixed projection: 4 noise channels + 1 encoding mean -> 3 colour channels.
        self._projection = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        """(K, 77, dim) float32 seeded by a hash of each prompt."""
        rows = []
        for prompt in prompts:
            seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal((77, self.dim), dtype=np.float32))
        return np.stack(rows) if rows else np.zeros((0, 77, self.dim), np.float32)

    def render(self, encodings: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3): noise upsampled 8x, mixed with each frame's mean encoding."""
        encodings, noise = np.asarray(encodings, np.float32), np.asarray(noise, np.float32)
        if encodings.shape[1:] != (77, self.dim) or noise.shape[1:] != self.latent_shape:
            raise RendererError(f"FakeRenderer got encodings {encodings.shape} and noise {noise.shape}")
        self.calls += 1
        time.sleep(self.seconds_per_frame * len(noise))
        level = np.broadcast_to(encodings.mean(axis=(1, 2))[:, None, None, None], (*noise.shape[:3], 1))
        features = np.concatenate([noise, level * 10], axis=-1)
        pixels = np.tanh(features @ self._projection) * 127.5 + 127.5
        return np.clip(pixels, 0, 255).astype(np.uint8).repeat(8, axis=1).repeat(8, axis=2)


class FakeRenderer(TextOnlyRenderer):
    """`TextOnlyRenderer` that can also start from pictures, as the contract's optional capability says.

    `encode_images`: each fitted picture averaged in 8 x 8 blocks, its RGB in [-1, 1] and their mean as the
    4 channels. A frame starting at step k > 0 of `steps` is its text-to-image pixels blended with its starting
    latent's RGB by w = k / steps (k == steps: the picture's block average alone); k == 0 leaves the frame's
    pixels exactly as without starts.
    """

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (M, height, width, 3) -> float32 (M, height/8, width/8, 4)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != (self.height, self.width, 3):
            raise RendererError(f"FakeRenderer got pictures {images.dtype} {images.shape}")
        m, (h, w, _) = len(images), self.latent_shape
        rgb = images.astype(np.float64).reshape(m, h, 8, w, 8, 3).mean(axis=(2, 4)) / 127.5 - 1.0
        return np.concatenate([rgb, rgb.mean(axis=-1, keepdims=True)], axis=-1).astype(np.float32)

    def render(
        self,
        encodings: np.ndarray,
        noise: np.ndarray,
        start_latents: np.ndarray | None = None,
        start_steps: np.ndarray | None = None,
    ) -> np.ndarray:
        """uint8 (B, H, W, 3): the text-to-image pixels, blended towards each frame's starting picture."""
        pixels = super().render(encodings, noise)
        if start_latents is None and start_steps is None:
            return pixels
        if start_latents is None or start_steps is None:
            raise RendererError("FakeRenderer got start_latents or start_steps without the other")
        steps = np.asarray(start_steps)
        if (
            start_latents.shape != noise.shape
            or steps.shape != (len(noise),)
            or not ((0 <= steps) & (steps <= self.steps)).all()
        ):
            raise RendererError(f"FakeRenderer got starts {start_latents.shape} at steps {steps.tolist()}")
        out = pixels.copy()
        for b in np.flatnonzero(steps > 0):
            w = steps[b] / self.steps
            picture = (np.asarray(start_latents[b, ..., :3], np.float64) + 1.0) * 127.5
            picture = picture.repeat(8, axis=0).repeat(8, axis=1)
            out[b] = np.clip((1 - w) * pixels[b] + w * picture, 0, 255).round().astype(np.uint8)
        return out


class SigmoidRenderer(FakeRenderer):
    """A renderer whose picture changes unevenly along the walk: a cross-fade between two fixed images by
    sigmoid(steepness · (t - 1/2)), t the frame's position within its segment (backwards in odd segments).

    Prompt k's encoding holds k in its first channel, so a lerp walk's frame carries its walk parameter u
    there; almost all of the change between two prompts happens near the middle of their segment, which
    uniform steps show as a jump and perceptual pacing evens out.
    """

    def __init__(self, steepness: float = 16.0, **options: Any) -> None:
        super().__init__(**options)
        self.steepness = steepness
        h, w = self.latent_shape[:2]
        rng = np.random.default_rng(1)
        self._ends = rng.uniform(0, 255, (2, h, w, 3)).repeat(8, axis=1).repeat(8, axis=2)

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        encodings = super().encode_text(prompts)
        encodings[:, :, 0] = np.arange(len(prompts), dtype=np.float32)[:, None]
        return encodings

    def render(self, encodings: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3): the two images blended by the sigmoid of each frame's t."""
        super().render(encodings, noise)  # the same checks and pace
        u = np.asarray(encodings, np.float64)[:, :, 0].mean(axis=1) % 2.0
        t = np.where(u <= 1.0, u, 2.0 - u)  # there and back: segments meet on the same image
        w = 1.0 / (1.0 + np.exp(-self.steepness * (t - 0.5)))[:, None, None, None]
        return np.clip((1 - w) * self._ends[0] + w * self._ends[1], 0, 255).round().astype(np.uint8)


class TensorFlowRenderer(FakeRenderer):
    """FakeRenderer in a worker that imports TensorFlow and lists its devices, as a KerasCV renderer's worker
    does (TensorFlow probes CUDA then), without building a model."""

    def __init__(self, **options: Any) -> None:
        import tensorflow as tf

        tf.config.list_physical_devices()
        super().__init__(**options)


class MixedStackRenderer(FakeRenderer):
    """A FakeRenderer whose precision (part of a worker's model stack) depends on the worker: the first one
    built claims `claim_dir`/first and says float32, every other says float16. Workers of one pool then
    have two stacks, as on a cluster whose nodes resolved different packages."""

    def __init__(self, claim_dir: str = "", **options: Any) -> None:
        super().__init__(**options)
        import os

        try:
            os.close(os.open(os.path.join(claim_dir, "first"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            precision = "float32"
        except FileExistsError:
            precision = "float16"
        self.info = {"precision": precision}
