"""Every use of KerasCV's private API, in one place: tied to the ``keras-cv==0.9.0`` pin in pyproject.toml.

KerasCV is frozen at 0.9.0 (its last release, April 2024), and raywalk leans on
its insides where the public API has no door:

- the sub-model classes (`keras_cv.src.models.stable_diffusion.*`): only they
  build with random weights offline (`download_weights=False`);
- `StableDiffusion`'s lazy attributes (`_text_encoder`, `_diffusion_model`,
  `_decoder`, `_tokenizer`): set to our sub-models, its public `encode_text`
  runs on them;
- `_get_unconditional_context`, `_get_initial_alphas` and
  `_get_timestep_embedding`: `generate_image`'s own helpers, the reference the
  sampler must equal;
- `StableDiffusionBase.__init__`: a model object without the licence print.

Importing this module imports TensorFlow, and refuses any other keras-cv version
in one line rather than rendering subtly different images. Raising the pin means
re-reading each use above against the new release.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import keras_cv
import numpy as np
from keras_cv.models import StableDiffusion, StableDiffusionV2
from keras_cv.models.stable_diffusion import ImageEncoder, SimpleTokenizer
from keras_cv.src.models.stable_diffusion.decoder import Decoder
from keras_cv.src.models.stable_diffusion.diffusion_model import DiffusionModel, DiffusionModelV2
from keras_cv.src.models.stable_diffusion.stable_diffusion import StableDiffusionBase
from keras_cv.src.models.stable_diffusion.text_encoder import TextEncoder, TextEncoderV2

from raywalk.errors import RendererError

KERAS_CV_VERSION = "0.9.0"


class Parts(Protocol):
    """The sub-models `reference_model` wraps (`raywalk.renderers.kerascv.models.SubModels` has them)."""

    @property
    def text_encoder(self) -> Any: ...
    @property
    def diffusion_model(self) -> Any: ...
    @property
    def decoder(self) -> Any: ...
    @property
    def tokenizer(self) -> Any: ...


def check_version(installed: str) -> None:
    """Refuse a keras-cv other than the pinned one.

    Raises:
        RendererError: `installed` is not `KERAS_CV_VERSION`.
    """
    if installed != KERAS_CV_VERSION:
        raise RendererError(
            f"keras-cv {installed} is installed; raywalk's KerasCV renderer uses KerasCV's private API and works"
            f" only with keras-cv=={KERAS_CV_VERSION} (pip install keras-cv=={KERAS_CV_VERSION})"
        )


check_version(keras_cv.__version__)


def sub_model_classes(version: str) -> tuple[type, type, type]:
    """(text encoder, diffusion model, decoder) classes of Stable Diffusion `version` ("v1.4" or "v2.1")."""
    text_encoder, diffusion_model = {"v1.4": (TextEncoder, DiffusionModel), "v2.1": (TextEncoderV2, DiffusionModelV2)}[
        version
    ]
    return text_encoder, diffusion_model, Decoder


def tokenizer(vocab: Path) -> Any:
    """KerasCV's CLIP tokenizer on the vocabulary file `vocab` (public API; here so keras_cv is imported once)."""
    return SimpleTokenizer(bpe_path=str(vocab))


def image_encoder(download: bool) -> Any:
    """KerasCV's VAE encoder (public API): the mean of the latent distribution times 0.18215, no sampling; its
    weights downloaded into KerasCV's cache when `download`, else random (here so keras_cv is imported once)."""
    return ImageEncoder(download_weights=download)


def reference_model(version: str, height: int, width: int, models: Parts, licence: bool) -> Any:
    """KerasCV's `StableDiffusion` (or `StableDiffusionV2`) object around `models`; it builds nothing.

    Its constructor prints the weights' licence (CreativeML Open RAIL-M or
    RAIL++-M): printed when `licence` (real weights), skipped for random ones.
    """
    cls = {"v1.4": StableDiffusion, "v2.1": StableDiffusionV2}[version]
    if licence:
        sd = cls(height, width, jit_compile=False)
    else:
        sd = cls.__new__(cls)
        StableDiffusionBase.__init__(sd, height, width, jit_compile=False)
    sd._text_encoder, sd._diffusion_model = models.text_encoder, models.diffusion_model
    sd._decoder, sd._tokenizer = models.decoder, models.tokenizer
    return sd


def unconditional_context(sd: Any) -> np.ndarray:
    """(1, 77, D) float32: the empty prompt's encoding, as `generate_image` computes it."""
    return np.asarray(sd._get_unconditional_context(), np.float32)


def initial_alphas(sd: Any, timesteps: np.ndarray) -> tuple[list[float], list[float]]:
    """`generate_image`'s cumulative alphas at `timesteps`, and each one's predecessor (1.0 for the first)."""
    return sd._get_initial_alphas(timesteps)


def timestep_embedding(sd: Any, timestep: int, batch_size: int) -> Any:
    """`generate_image`'s (batch_size, 320) sinusoidal embedding of `timestep`, as a tensor."""
    return sd._get_timestep_embedding(timestep, batch_size)
