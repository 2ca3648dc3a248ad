"""Starting the KerasCV renderer's DDIM sampler from pictures (the renderer contract's optional capability).

A picture enters as latents: KerasCV's VAE encoder (`ImageEncoder`) of the picture scaled from uint8 to
[-1, 1] (the range the decoder leaves), which keeps the mean of the latent distribution (no sampling) times
Stable Diffusion's 0.18215 latent scaling. Each picture is encoded alone, so its latents never depend on the
pictures encoded with it.

A frame that starts at step k of the renderer's schedule (its timesteps walked from the noisiest, 999, down
to 0) begins from the picture's latents z noised to the timestep t of step k with the frame's own noise,

    latent = sqrt(alpha_bar_t) * z + sqrt(1 - alpha_bar_t) * noise,

and runs steps k .. steps - 1 of the sampler unchanged (KerasHub's `starting_step` convention:
k = int(steps * (1 - strength))). k = 0 is the text-to-image frame: its latent is the noise itself, so it is
byte-identical to the frame rendered without starts. k = steps runs no step (alpha_bar = 1 there): the frame
is the decoder's image of z, the VAE's round trip of the picture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from raywalk.errors import RendererError
from raywalk.renderers.kerascv.models import build_image_encoder


class PictureEncoder:
    """The renderer's VAE encoder, built on first use: a job without pictures never downloads or builds it."""

    def __init__(self, version: str, weights: str, height: int, width: int) -> None:
        self._version, self._weights, self._size = version, weights, (height, width)
        self._model: Any = None

    @property
    def built(self) -> bool:
        """Whether the encoder has been built (by a first call)."""
        return self._model is not None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """float32 (M, h, w, 4) latents of uint8 pictures (M, height, width, 3), each encoded alone.

        Raises:
            RendererError: pictures of another shape or type, or (on first use) a weights directory without a
                good copy of the image encoder's file.
        """
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (*self._size, 3):
            raise RendererError(
                f"encode_images needs uint8 pictures (M, {self._size[0]}, {self._size[1]}, 3),"
                f" got {images.dtype} {images.shape}"
            )
        if self._model is None:
            self._model = build_image_encoder(self._version, self._weights)
        h, w = self._size[0] // 8, self._size[1] // 8
        rows = [self._encode(picture[None]) for picture in images]
        return np.concatenate(rows) if rows else np.zeros((0, h, w, 4), np.float32)

    def _encode(self, picture: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        scaled = picture.astype(np.float32) / 127.5 - 1.0
        return np.asarray(tf.cast(self._model(scaled, training=False), tf.float32))


def noise_levels(alphas: Sequence[float]) -> list[tuple[np.float32, np.float32]]:
    """(sqrt(alpha_bar), sqrt(1 - alpha_bar)) at the start of each step, for cumulative `alphas` in the order
    the steps run, and (1, 0) after the last: what `start_latents` mixes for a frame that starts there."""
    return [(np.float32(math.sqrt(a)), np.float32(math.sqrt(1.0 - a))) for a in [*alphas, 1.0]]


def start_latents(z: np.ndarray, noise: np.ndarray, level: tuple[np.float32, np.float32]) -> np.ndarray:
    """The picture latents `z` noised to `level` (a `noise_levels` entry) with each frame's `noise`."""
    sqrt_alpha, sqrt_one_minus = level
    return sqrt_alpha * z + sqrt_one_minus * noise


def check_starts(
    start_latents: np.ndarray | None,
    start_steps: np.ndarray | Sequence[int] | None,
    rows: int,
    latent_shape: tuple[int, ...],
    steps: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """`render`'s starts as float32 latents and int64 steps, or None when the call has none.

    Raises:
        RendererError: one of the two without the other, shapes that do not fit `rows` frames of
            `latent_shape`, or a step outside [0, steps].
    """
    if start_latents is None and start_steps is None:
        return None
    if start_latents is None or start_steps is None:
        raise RendererError("render needs start_latents and start_steps together, or neither")
    latents = np.asarray(start_latents, np.float32)
    ks = np.asarray(start_steps)
    if latents.shape != (rows, *latent_shape) or ks.shape != (rows,) or not np.issubdtype(ks.dtype, np.integer):
        raise RendererError(
            f"render needs start_latents ({rows}, {', '.join(map(str, latent_shape))}) and integer start_steps"
            f" ({rows},), got {latents.shape} and {ks.dtype} {ks.shape}"
        )
    if rows and (ks.min() < 0 or ks.max() > steps):
        raise RendererError(f"render's start_steps must lie in [0, {steps}], got {ks.min()} to {ks.max()}")
    return latents, ks.astype(np.int64)


def step_groups(start_steps: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Each starting step with the rows of its frames, in order: the frames rendered together."""
    return [(int(k), np.flatnonzero(start_steps == k)) for k in np.unique(start_steps)]


def render_from_starts(
    render_rows: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
    encodings: np.ndarray,
    noise: np.ndarray,
    starts: tuple[np.ndarray, np.ndarray],
    levels: list[tuple[np.float32, np.float32]],
) -> np.ndarray:
    """The frames of each starting step k rendered together by `render_rows(encodings, latents, k)`, back in
    frame order; at k = 0 the latents are the noise itself (today's frame, byte for byte)."""
    (z, ks), order, images = starts, [], []
    for k, rows in step_groups(ks):
        latents = noise[rows] if k == 0 else start_latents(z[rows], noise[rows], levels[k])
        images.append(render_rows(encodings[rows], latents, k))
        order.append(rows)
    return np.concatenate(images)[np.argsort(np.concatenate(order))]
