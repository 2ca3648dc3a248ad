"""KerasCV Stable Diffusion (v1.4 and v2.1) as a raywalk renderer.

- `renderer`: `KerasCVRenderer`, the renderer contract around KerasCV's sub-models and its DDIM sampler;
- `settings`: its options, validated once;
- `models`: the sub-models, built with downloaded, staged or seeded random weights;
- `image_start`: pictures as starting latents (the VAE encoder, built on first use) and DDIM from a starting step;
- `api`: every use of KerasCV's private API (importing it imports TensorFlow).

Weight files live in `raywalk.renderers.weights`; prompts are measured by `raywalk.renderers.clip_tokens`.
Nothing here imports TensorFlow or KerasCV until a model is built.
"""

from raywalk.renderers.kerascv.models import SubModels, build_models
from raywalk.renderers.kerascv.renderer import KerasCVRenderer

__all__ = ["KerasCVRenderer", "SubModels", "build_models"]
