"""The tiny Stable Diffusion 3 configuration, built in code: random weights, seconds on a CPU, for tests.

``config: tiny`` builds it instead of a preset's architecture; it loads nothing (no file,
no download) and runs without TensorFlow.
"""

from __future__ import annotations

from typing import Any

from raywalk.renderers.sd3.kerashub_api import byte_symbols, kerashub, python_preprocessing, vae_backbone
from raywalk.renderers.sd3.presets import RANDOM_SEED


def tiny_preprocessor() -> Any:
    """A `StableDiffusion3TextToImagePreprocessor` over an in-code, character-level CLIP vocabulary.

    One merge ("th" at a word's end), else every character of a prompt is one token (so a
    prompt of up to 75 characters, spaces not counted, fits in 77 tokens). No file and no
    download; runs without TensorFlow.
    """
    keras_hub = kerashub()
    symbols = byte_symbols()
    vocabulary = {
        token: i
        for i, token in enumerate(
            symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>", "th</w>"]
        )
    }
    merges = ["t h</w>"]  # KerasHub's TensorFlow tables cannot be built from an empty merge list
    clips = [  # CLIP-L pads with its end token, CLIP-G with 0; file names of their own, so it saves as a preset
        keras_hub.models.CLIPPreprocessor(
            keras_hub.models.CLIPTokenizer(
                vocabulary, merges, pad_with_end_token=name == "clip_l", config_file=f"{name}_tokenizer.json"
            ),
            config_file=f"{name}_preprocessor.json",
        )
        for name in ("clip_l", "clip_g")
    ]
    return python_preprocessing(keras_hub.models.StableDiffusion3TextToImagePreprocessor(*clips))


def tiny_backbone(width: int, height: int, dtype: str | None = None) -> Any:
    """A `StableDiffusion3Backbone` small enough for tests on a CPU (seconds), with seeded random weights.

    The configuration of KerasHub's own StableDiffusion3TextToImage test: a 2-layer MMDiT of
    width 32, a VAE of 32 filters per block, 2-layer CLIP-L (64) and CLIP-G (128) towers, no T5;
    the CLIP vocabulary is `tiny_preprocessor`'s. Sequences are still (154, 4096) (KerasHub pads
    CLIP's 192 features to T5's 4096 and 77 tokens to 154); pooled vectors are (192,).
    """
    import keras

    keras_hub = kerashub()
    keras.utils.set_random_seed(RANDOM_SEED)
    vocabulary_size = 2 * 256 + 3  # tiny_preprocessor's
    return keras_hub.models.StableDiffusion3Backbone(
        mmdit_patch_size=2,
        mmdit_hidden_dim=32,
        mmdit_num_layers=2,
        mmdit_num_heads=2,
        mmdit_position_size=192,
        mmdit_qk_norm=None,
        mmdit_dual_attention_indices=None,
        vae=vae_backbone(
            encoder_num_filters=[32] * 4,
            encoder_num_blocks=[1] * 4,
            decoder_num_filters=[32] * 4,
            decoder_num_blocks=[1] * 4,
            sampler_method="mode",
            dtype=dtype,
            name="vae",
        ),
        clip_l=keras_hub.models.CLIPTextEncoder(
            vocabulary_size, 64, 64, 2, 2, 128, "quick_gelu", -2, dtype=dtype, name="clip_l"
        ),
        clip_g=keras_hub.models.CLIPTextEncoder(
            vocabulary_size, 128, 128, 2, 2, 256, "gelu", -2, dtype=dtype, name="clip_g"
        ),
        image_shape=(height, width, 3),
        dtype=dtype,
    )
