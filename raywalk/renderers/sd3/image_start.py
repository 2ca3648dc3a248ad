"""Frames that start from a picture, as KerasHub's `StableDiffusion3ImageToImage.generate_step` does.

A picture, uint8 at the renderer's size, is scaled to [-1, 1] (``p / 127.5 - 1``, the inverse of
`generate`'s conversion to uint8; `generate` takes images already in that range and resizes them,
nearest, to the backbone's size, which leaves an image of that size as it is) and encoded by the
VAE to its *mean*: `backbone.encode_image_step` with the VAE's ``sampler_method="mode"``, before
the backbone's `image_rescaling`. KerasHub's presets build their VAE with ``"sample"``, which draws
an unseeded sample on every call (`DiagonalGaussianDistributionSampler`), so `generate` is not
repeatable there; a walk's frames must be a pure function of (job, frame): the mean, whatever the
VAE's method.

The start latents are kept in the VAE's space, and `image_rescaling` ((m - shift) x scale) runs
inside the compiled sampler, as in `generate_step`: compiled together, the compilers reassociate it
with the noising (TensorFlow's grappler computes (m - shift) x (scale x (1 - sigma))), so latents
rescaled in a separate call would differ from `generate` in the last bit, and a pixel or two.

A frame starting at step k of n: its start latent z (a picture's mean, or a walk between them) is
rescaled and noised to step k with the frame's noise e by `backbone.add_noise_step` (sigma_k e +
(1 - sigma_k) z, sigma the flow-matching schedule), denoised by `backbone.denoise_step` from step k
to n in one `fori_loop`, decoded by `backbone.decode_step` and converted to uint8 as `generate`
does. At k = n, sigma_n = 0: no step runs and the frame is the VAE's round trip of the picture.
Frames at k = 0 take the text-to-image sampler, unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raywalk.errors import RendererError


def unit_range(pixels: np.ndarray) -> np.ndarray:
    """float32 pictures in [-1, 1] from uint8 pixels (computed in float64, rounded once)."""
    return (np.asarray(pixels, np.float64) / 127.5 - 1.0).astype(np.float32)


def vae_means(backbone: Any, images: Any) -> Any:
    """The VAE's mean latent of `images` in [-1, 1]: `backbone.encode_image_step` with ``sampler_method="mode"``
    whatever the VAE's method (the encoder's moments split in two on the channel axis, the first half),
    before `image_rescaling`."""
    from keras import ops

    vae = backbone.vae
    mean, _ = ops.split(vae.encoder(images), 2, axis=vae.distribution_sampler.axis)
    return mean


def start_groups(
    start_latents: np.ndarray | None,
    start_steps: np.ndarray | None,
    frames: int,
    latent_shape: tuple[int, ...],
    steps: int,
) -> list[tuple[int, np.ndarray]]:
    """The frames grouped by starting step, (k, frame rows) by increasing k: every frame at step 0 when
    neither starts are given.

    Raises:
        RendererError: only one of the two given, or starts of the wrong shape, or a step outside [0, steps].
    """
    if start_latents is None and start_steps is None:
        return [(0, np.arange(frames))] if frames else []
    if start_latents is None or start_steps is None:
        raise RendererError("render needs start_latents and start_steps together, or neither")
    latents, ks = np.asarray(start_latents), np.asarray(start_steps)
    if latents.shape != (frames, *latent_shape) or ks.shape != (frames,) or ks.dtype.kind not in "iu":
        raise RendererError(
            f"render needs start_latents {(frames, *latent_shape)} and integer start_steps ({frames},), "
            f"got {latents.shape} and {ks.dtype} {ks.shape}"
        )
    if frames and (ks.min() < 0 or ks.max() > steps):
        raise RendererError(f"start_steps must be in [0, {steps}], got {ks.min()} to {ks.max()}")
    return [(int(k), np.flatnonzero(ks == k)) for k in np.unique(ks)]
