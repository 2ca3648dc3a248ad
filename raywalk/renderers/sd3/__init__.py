"""Stable Diffusion 3 and 3.5 through KerasHub as a raywalk renderer, on any Keras backend.

One module per concept, as KerasHub's own `stable_diffusion_3/`:

- `renderer`: `StableDiffusion3Renderer`, the renderer contract around a backbone and preprocessor;
- `sampler`: KerasHub's generation steps (text to image, and from a start), each compiled once;
- `image_start`: frames that start from a picture (its VAE mean, noised to a starting step);
- `settings`: its options, validated once;
- `presets`: the presets as data, and preset directories staged and verified for clusters without internet;
- `tiny`: the tiny random configuration built in code, for tests;
- `backends`: the Keras backend chosen and each backend's compilation (jax.jit, tf.function, torch.no_grad);
- `preprocessing`: CLIP token ids and the 77-token limit, checked without building a model;
- `kerashub_api`: every use of KerasHub's private API.

An encoding has two named parts, as `StableDiffusion3Backbone.encode_text_step` returns them:
``"sequence"`` (K, 154, 4096) (CLIP-L and CLIP-G hidden states, zero-padded where the presets
leave out T5) and ``"pooled"`` (K, 2048); the latent is (H/8, W/8, 16).

Keras, KerasHub and any backend are imported inside functions: the driver imports this package
to check a job and must stay light.
"""

from raywalk.renderers.sd3.presets import stage_preset, verify_preset
from raywalk.renderers.sd3.renderer import StableDiffusion3Renderer

__all__ = ["StableDiffusion3Renderer", "stage_preset", "verify_preset"]
