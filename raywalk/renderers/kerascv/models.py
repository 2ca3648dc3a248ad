"""KerasCV's Stable Diffusion sub-models, built with downloaded, staged or seeded random weights.

TensorFlow and KerasCV are imported inside functions (through `raywalk.renderers.kerascv.api`,
which imports TensorFlow): the driver imports the renderer to check a job and must stay light.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from raywalk.renderers.clip_tokens import MAX_TOKENS
from raywalk.renderers.kerascv.settings import weights_dir
from raywalk.renderers.weights import IMAGE_ENCODER, WEIGHT_FILES, verify_weights, vocabulary

log = logging.getLogger(__name__)

RANDOM_SEED = 0


@dataclass(frozen=True)
class SubModels:
    """KerasCV's Stable Diffusion parts: what `StableDiffusion` builds lazily."""

    text_encoder: Any
    diffusion_model: Any
    decoder: Any
    tokenizer: Any


def build_models(version: str, width: int, height: int, weights: str) -> SubModels:
    """Build the sub-models at `width` x `height` with `weights`: 'download', 'random' or a directory.

    Random weights are seeded, so every worker of a smoke-test run renders the same
    images. Set the precision policy before calling this.

    Raises:
        RendererError: a weights directory with files missing or wrong, no CLIP vocabulary, or another keras-cv.
    """
    import keras

    from raywalk.renderers.kerascv import api

    directory = weights_dir(weights)
    files = verify_weights(directory, version) if directory else {}
    text_cls, unet_cls, decoder_cls = api.sub_model_classes(version)
    if weights == "random":
        log.warning("KerasCV Stable Diffusion %s with RANDOM weights: the images are noise (smoke tests only)", version)
        keras.utils.set_random_seed(RANDOM_SEED)
    download = weights == "download"
    models = SubModels(
        text_encoder=text_cls(MAX_TOKENS, download_weights=download),
        diffusion_model=unet_cls(height, width, MAX_TOKENS, download_weights=download),
        decoder=decoder_cls(height, width, download_weights=download),
        tokenizer=api.tokenizer(vocabulary(directory)),
    )
    if directory:
        for model, file in zip((models.text_encoder, models.diffusion_model, models.decoder), WEIGHT_FILES[version]):
            model.load_weights(str(files[file.name]))
    return models


def build_image_encoder(version: str, weights: str) -> Any:
    """KerasCV's VAE encoder with `weights` as `build_models` takes them (random ones seeded), for jobs that
    start from pictures: only they build it, and only they need its file in a weights directory.

    Raises:
        RendererError: a weights directory without a good copy of the image encoder's file (the fix named).
    """
    import keras

    from raywalk.renderers.kerascv import api

    directory = weights_dir(weights)
    files = verify_weights(directory, version, (IMAGE_ENCODER,)) if directory else {}
    if weights == "random":
        keras.utils.set_random_seed(RANDOM_SEED)
    encoder = api.image_encoder(download=weights == "download")
    if directory:
        encoder.load_weights(str(files[IMAGE_ENCODER.name]))
    return encoder


def enable_memory_growth() -> list[Any]:
    """Let TensorFlow allocate GPU memory as needed (so two workers can share a GPU); the GPUs found."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # this process already initialised its GPUs: growth is fixed by then
            log.info("GPU memory growth not changed: TensorFlow already initialised %s", gpu.name)
    return gpus
