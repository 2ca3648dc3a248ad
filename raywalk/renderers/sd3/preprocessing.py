"""CLIP preprocessing for Stable Diffusion 3: token ids for the text encoders, and prompts refused
when they are longer than CLIP's 77 tokens (KerasHub's preprocessor would cut them silently).

Prompts are counted at planning without building a model, with the tokenizer the renderer will
use where that needs no download, and again on the worker by the preprocessor itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from raywalk.errors import RendererError
from raywalk.renderers.clip_tokens import check_length, counter
from raywalk.renderers.sd3.kerashub_api import kerashub
from raywalk.renderers.sd3.presets import verify_preset
from raywalk.renderers.sd3.settings import Settings
from raywalk.renderers.sd3.tiny import tiny_preprocessor
from raywalk.renderers.weights import VOCAB, keras_cache, problem

log = logging.getLogger(__name__)

MODEL = "Stable Diffusion 3"


def count_tokens(tokenizer: Any, prompt: str) -> int:
    """The CLIP token count of `prompt` by `tokenizer`, start and end included.

    Raises:
        RendererError: more than 77 tokens.
    """
    return check_length(prompt, len(np.asarray(tokenizer(prompt.lower())).reshape(-1)) + 2, MODEL)


def token_ids(preprocessor: Any, prompts: list[str]) -> dict[str, np.ndarray]:
    """The preprocessor's token ids per text encoder, after refusing over-long prompts.

    Raises:
        RendererError: a prompt of more than 77 tokens.
    """
    for prompt in prompts:
        count_tokens(preprocessor.clip_l_preprocessor.tokenizer, prompt)
    ids = preprocessor.generate_preprocess(list(prompts))
    return {name: np.asarray(value, np.int32) for name, value in ids.items()}


def check_prompt_lengths(settings: Settings, prompts: list[str]) -> None:
    """Refuse prompts (and the negative prompt) longer than 77 CLIP tokens; builds no model.

    Tokens are counted with the tokenizer the renderer will use where that needs no download:
    the tiny configuration's, or a staged preset directory's when it exists here (the planning
    machine may not see a cluster's shared storage), or OpenAI's CLIP vocabulary (SD3's CLIP-L/G
    tokenize with it) when KerasCV's cache holds it. Otherwise nothing is counted (the worker's
    `encode_text` still refuses an over-long prompt).

    Raises:
        RendererError: a prompt of more than 77 tokens, or a staged directory that fails its check.
    """
    texts = [*prompts, settings.negative_prompt]
    if settings.config == "tiny":
        tokenizer = tiny_preprocessor().clip_l_preprocessor.tokenizer
    elif Path(settings.source).expanduser().is_dir():
        source = str(verify_preset(settings.source))
        try:
            preprocessor = kerashub().models.StableDiffusion3TextToImagePreprocessor.from_preset(source)
        except Exception as e:  # KerasHub's own errors for a directory that is not a preset
            raise RendererError(f"cannot load the preprocessor of {source!r}: {type(e).__name__}: {e}") from e
        tokenizer = preprocessor.clip_l_preprocessor.tokenizer
    elif problem(vocab := keras_cache() / VOCAB.name, VOCAB) is None:
        count = counter(vocab).count  # counted without TensorFlow or KerasHub
        for text in texts:
            check_length(text, count(text), MODEL)
        return
    else:
        log.info(
            "prompt lengths not checked at planning: %r is not a local directory and %s is not there",
            settings.source,
            vocab,
        )
        return
    for text in texts:
        count_tokens(tokenizer, text)
