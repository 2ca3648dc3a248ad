"""`Sampler`: KerasHub's Stable Diffusion 3 generation steps for one backbone, each compiled once.

Text to image is `StableDiffusion3TextToImage.generate_step` after its text encoding; from a start,
`StableDiffusion3ImageToImage.generate_step` after its image and text encodings (`image_start`);
both end with `generate`'s conversion to uint8. Compiled as `generate` compiles them
(`backends.compile_for_backend`), with every argument a tensor of a fixed shape, so each is traced
once per worker.
"""

from __future__ import annotations

import functools
from typing import Any

from raywalk.renderers.sd3 import backends
from raywalk.renderers.sd3.image_start import vae_means


def generate_uint8(images: Any) -> Any:
    """`generate`'s conversion of decoded images in [-1, 1] to uint8 (`_normalize_generate_outputs`)."""
    from keras import ops

    images = ops.clip(ops.divide(ops.add(images, 1.0), 2.0), 0.0, 1.0)
    return ops.cast(ops.round(ops.multiply(images, 255.0)), "uint8")


def denoise_and_decode(
    backbone: Any, latents: Any, embeddings: tuple[Any, ...], start: Any, num_steps: Any, guidance: Any
) -> Any:
    """Steps `start` to `num_steps` of `denoise_step` (`generate_step`'s `fori_loop`), `decode_step`, then
    `generate`'s conversion to uint8."""
    from keras import ops

    def body(step: Any, latents: Any) -> Any:
        return backbone.denoise_step(latents, embeddings, step, num_steps, guidance)

    return generate_uint8(backbone.decode_step(ops.fori_loop(start, num_steps, body, latents)))


class Sampler:
    """The compiled steps of one backbone at `steps` steps; guidance runs both passes as one MMDiT call of
    twice the batch when `guidance_scale` is given (`generate` passes None at a scale <= 1).

    `traces` counts how often a step was traced (jax, tensorflow; PyTorch runs eagerly and counts calls).
    """

    def __init__(
        self, backbone: Any, steps: int, guidance_scale: float | None, negative: tuple[Any, Any], xla: bool
    ) -> None:
        from keras import ops

        self._backbone = backbone
        self._negative = negative
        self._num_steps = ops.convert_to_tensor(steps, "int32")
        self._guidance = None if guidance_scale is None else ops.convert_to_tensor(float(guidance_scale))
        self.traces = 0
        self._text_to_image = backends.compile_for_backend(self._text_step, backbone, xla)
        self._from_start = backends.compile_for_backend(self._start_step, backbone, xla)
        self.encode_image = backends.compile_for_backend(functools.partial(vae_means, backbone), backbone, xla)

    def text_to_image(self, noise: Any, sequence: Any, pooled: Any) -> Any:
        """uint8 images denoised from `noise` over every step."""
        return self._text_to_image(noise, sequence, pooled, *self._negative, self._num_steps, self._guidance)

    def from_start(self, pictures: Any, noise: Any, sequence: Any, pooled: Any, start: int) -> Any:
        """uint8 images from `pictures` (latents) noised to step `start` with `noise`, then denoised from there."""
        from keras import ops

        step = ops.convert_to_tensor(start, "int32")  # a tensor: one trace for every starting step
        args = (*self._negative, step, self._num_steps, self._guidance)
        return self._from_start(pictures, noise, sequence, pooled, *args)

    def _embeddings(self, sequence: Any, pooled: Any, negative_sequence: Any, negative_pooled: Any) -> tuple[Any, ...]:
        """`denoise_step`'s embeddings; without guidance no negative ones (one MMDiT pass, as `generate`)."""
        guided = self._guidance is not None
        return (sequence, negative_sequence if guided else None, pooled, negative_pooled if guided else None)

    def _text_step(
        self, latents: Any, sequence: Any, pooled: Any, negative_sequence: Any, negative_pooled: Any,
        num_steps: Any, guidance: Any,
    ) -> Any:  # fmt: skip
        self.traces += 1
        embeddings = self._embeddings(sequence, pooled, negative_sequence, negative_pooled)
        return denoise_and_decode(self._backbone, latents, embeddings, 0, num_steps, guidance)

    def _start_step(
        self, pictures: Any, noise: Any, sequence: Any, pooled: Any, negative_sequence: Any, negative_pooled: Any,
        start: Any, num_steps: Any, guidance: Any,
    ) -> Any:  # fmt: skip
        self.traces += 1
        # rescaled here, compiled with the noising as in generate_step, not in encode_images (see image_start)
        latents = self._backbone.add_noise_step(self._backbone.image_rescaling(pictures), noise, start, num_steps)
        embeddings = self._embeddings(sequence, pooled, negative_sequence, negative_pooled)
        return denoise_and_decode(self._backbone, latents, embeddings, start, num_steps, guidance)
