"""`KerasCVRenderer`: KerasCV Stable Diffusion (v1.4 and v2.1) as a raywalk renderer.

The sampler is KerasCV's own (`StableDiffusionBase.generate_image`: DDIM
schedule, classifier-free guidance, same timestep embedding and decoder
post-processing) without its waste: the unconditional context is encoded once
per renderer, nothing is printed per step, the conditional and unconditional
UNet passes can share one call, and every batch has the same shape so the
compiled step is traced once per worker. Frames may start from pictures at a
later step of the same schedule (`raywalk.renderers.kerascv.image_start`).

TensorFlow and KerasCV are imported inside functions, through
`raywalk.renderers.kerascv.api` (the one module that touches KerasCV's private API): the
driver and `raywalk plan` import this module to check a job (`check_renderer`)
and must stay light. Weight files live in `raywalk.renderers.weights`; prompts are
measured by `raywalk.renderers.clip_tokens`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from raywalk.core.trajectory import Encodings
from raywalk.errors import RendererError
from raywalk.renderers.batches import pad_rows
from raywalk.renderers.clip_tokens import check_length, counter
from raywalk.renderers.kerascv.image_start import PictureEncoder, check_starts, noise_levels, render_from_starts
from raywalk.renderers.kerascv.models import SubModels, build_models, enable_memory_growth
from raywalk.renderers.kerascv.settings import AUTO, Settings
from raywalk.renderers.weights import resource_notes, vocabulary

CONTEXT = "context"  # the one encoding part of SD 1.x/2.x: (77, D) per prompt
MODEL = "Stable Diffusion"


class KerasCVRenderer:
    """KerasCV Stable Diffusion as a raywalk renderer (see `raywalk.renderers.contract.Renderer`).

    Options (the job's ``model.options``):
      version         "v1.4" (StableDiffusion, D=768) or "v2.1" (StableDiffusionV2, D=1024)
      xla             "auto" (on a GPU only), true or false: XLA-compile the sampler step and decoder
      negative_prompt guides away from this text instead of the empty prompt
      joint_guidance  "auto" (on), true or false: the conditional and unconditional UNet passes
                      in one call of twice the batch (faster on CPU and GPU; false halves the
                      UNet's activation memory)

    Attributes a driver may record: `random_weights`, `info` (version, weights,
    precision, xla, joint_guidance as resolved on this machine).
    """

    denoiser: ClassVar[str] = "UNet"
    latent_channels: ClassVar[int] = 4
    guidance_optional: ClassVar[bool] = False  # generate_image runs both passes at any guidance scale

    def __init__(
        self,
        width: int = 512,
        height: int = 512,
        steps: int = 50,
        guidance_scale: float = 7.5,
        weights: str = "download",
        precision: str = AUTO,
        batch_size: int = 1,
        version: str = "v1.4",
        xla: str | bool = AUTO,
        negative_prompt: str = "",
        joint_guidance: str | bool = AUTO,
    ) -> None:
        """Build the sub-models the settings name (in a worker: this loads the model).

        Raises:
            RendererError: invalid settings, a weights directory with files missing or wrong, or no CLIP
                vocabulary.
        """
        settings = Settings(
            width, height, steps, guidance_scale, weights, precision, batch_size, version, xla, negative_prompt,
            joint_guidance,
        )  # fmt: skip
        import keras

        on_gpu = bool(enable_memory_growth())
        policy = ("mixed_float16" if on_gpu else "float32") if precision == AUTO else precision
        keras.mixed_precision.set_global_policy(policy)
        self._start(settings, build_models(version, width, height, weights), on_gpu)

    @classmethod
    def settings_of(cls, **kwargs: Any) -> Settings:
        """The validated settings of constructor `kwargs`, with the constructor's defaults.

        Raises:
            RendererError: an unknown or invalid argument.
        """
        return Settings.bind(inspect.signature(cls), kwargs)

    @classmethod
    def from_models(cls, models: SubModels, **kwargs: Any) -> KerasCVRenderer:
        """A renderer around already built sub-models (tests and benchmarks share one set); kwargs as for the
        constructor, whose `weights` and `precision` then only label the models."""
        renderer = cls.__new__(cls)
        renderer._start(cls.settings_of(**kwargs), models, bool(enable_memory_growth()))
        return renderer

    @classmethod
    def keras_backend(cls, **kwargs: Any) -> str:
        """KerasCV's Stable Diffusion runs on TensorFlow only (its sampler here is a `tf.function`)."""
        return "tensorflow"

    @classmethod
    def check_prompts(cls, prompts: list[str], **kwargs: Any) -> None:
        """Refuse prompts (and a negative prompt) longer than CLIP's 77 tokens, naming them; imports neither
        TensorFlow nor KerasCV and builds no model.

        The vocabulary comes from the weights directory when it exists here (the
        planning machine may not see a cluster's shared storage), else from KerasCV's cache.

        Raises:
            RendererError: an over-long prompt, an option the renderer does not take, or no CLIP vocabulary
                on this machine (the message says where to copy it).
        """
        settings = cls.settings_of(**kwargs)
        directory = settings.weights_dir
        tokens = counter(vocabulary(directory if directory and directory.is_dir() else None))
        for prompt in [*prompts, settings.negative_prompt]:
            check_length(prompt, tokens.count(prompt), MODEL)

    @classmethod
    def check_resources(cls, **kwargs: Any) -> list[str]:
        """Check the weights this renderer would load, without loading them; returns notes of what this
        machine cannot check (see `raywalk.renderers.contract.check_renderer`).

        A weights directory that is here has every file's SHA-256 checked; one that is
        not is a note. With ``weights: download`` and files missing from KerasCV's cache,
        the download host must answer within `weights.PROBE_TIMEOUT_S`, else a note with the fix.

        Raises:
            RendererError: a weights directory with files missing or wrong (named, with the
                `raywalk weights stage` fix), or an option the renderer does not take.
        """
        settings = cls.settings_of(**kwargs)
        return resource_notes(settings.weights_dir, settings.weights, settings.version)

    def _start(self, settings: Settings, models: SubModels, on_gpu: bool) -> None:
        import keras
        import tensorflow as tf

        from raywalk.renderers.kerascv import api

        self.settings = settings
        self.latent_shape = (settings.height // 8, settings.width // 8, self.latent_channels)
        self.random_weights = settings.weights == "random"
        xla = on_gpu if settings.xla == AUTO else settings.xla
        joint = True if settings.joint_guidance == AUTO else settings.joint_guidance
        self.info = {
            "renderer": "kerascv",
            "version": settings.version,
            "weights": settings.weights,
            "random_weights": self.random_weights,
            "precision": keras.mixed_precision.global_policy().name,
            "xla": xla,
            "joint_guidance": joint,
        }
        # KerasCV's model object around our sub-models: its encode_text and schedule helpers are the reference.
        sd = api.reference_model(
            settings.version, settings.height, settings.width, models, licence=not self.random_weights
        )
        self._sd = sd

        b = settings.batch_size
        if settings.negative_prompt:
            uncond = self.encode_text([settings.negative_prompt])[CONTEXT]
        else:
            uncond = api.unconditional_context(sd)
        self._uncond = tf.constant(np.repeat(uncond, b, axis=0))
        # KerasCV's DDIM schedule (generate_image), walked from the last timestep to the first.
        ratio = (1000 - 1) / (settings.steps - 1) if settings.steps > 1 else 1000
        timesteps = (np.arange(0, settings.steps) * ratio).round().astype(np.int64)
        alphas, alphas_prev = api.initial_alphas(sd, timesteps)
        self._levels = noise_levels(alphas[::-1])
        self._pictures = PictureEncoder(settings.version, settings.weights, settings.height, settings.width)
        self._schedule = [
            (
                api.timestep_embedding(sd, t, 2 * b if joint else b),
                # generate_image's Python-float coefficients, as the float32 they become in TF
                tf.constant(
                    [math.sqrt(1 - a_t), math.sqrt(a_t), math.sqrt(1.0 - a_prev), math.sqrt(a_prev)], tf.float32
                ),
            )
            for t, a_t, a_prev in reversed(list(zip(timesteps, alphas, alphas_prev)))
        ]
        unet, decoder, g = models.diffusion_model, models.decoder, settings.guidance_scale

        def guided(latent: tf.Tensor, t_emb: tf.Tensor, context: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            if joint:
                out = unet(
                    {
                        "latent": tf.concat([latent, latent], 0),
                        "timestep_embedding": t_emb,
                        "context": tf.concat([self._uncond, context], 0),
                    },
                    training=False,
                )
                return tf.split(tf.cast(out, tf.float32), 2)
            uncond_out = unet({"latent": latent, "timestep_embedding": t_emb, "context": self._uncond}, training=False)
            cond_out = unet({"latent": latent, "timestep_embedding": t_emb, "context": context}, training=False)
            return tf.cast(uncond_out, tf.float32), tf.cast(cond_out, tf.float32)

        @tf.function(jit_compile=xla)
        def step(latent: tf.Tensor, t_emb: tf.Tensor, context: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
            uncond_eps, cond_eps = guided(latent, t_emb, context)
            eps = uncond_eps + g * (cond_eps - uncond_eps)
            pred_x0 = (latent - c[0] * eps) / c[1]
            return eps * c[2] + c[3] * pred_x0

        @tf.function(jit_compile=xla)
        def decode(latent: tf.Tensor) -> tf.Tensor:
            return tf.cast(decoder(latent, training=False), tf.float32)

        self._step, self._decode = step, decode

    def encode_text(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """{"context": (K, 77, D)} float32: KerasCV's `encode_text` of each prompt, squeezed and stacked in order."""
        for prompt in prompts:
            check_length(prompt, len(self._sd.tokenizer.encode(prompt)), MODEL)
        rows = [np.asarray(self._sd.encode_text(p), np.float32)[0] for p in prompts]
        return {CONTEXT: np.stack(rows) if rows else np.zeros((0, *self._uncond.shape[1:]), np.float32)}

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """float32 (M, h, w, 4) latents of uint8 pictures (M, H, W, 3) (see `kerascv.image_start`).

        Raises:
            RendererError: pictures of another shape or type, or a weights directory without the image encoder.
        """
        return self._pictures(images)

    def render(
        self,
        encodings: Encodings,
        noise: np.ndarray,
        start_latents: np.ndarray | None = None,
        start_steps: np.ndarray | None = None,
    ) -> np.ndarray:
        """uint8 (B, H, W, 3) images for encodings {"context": (B, 77, D)} (or that array) and noise
        (B, h, w, 4), batch_size at a time; with `start_latents` (B, h, w, 4) and `start_steps` (B,), each
        frame starts from its picture latents at its step (see `kerascv.image_start`).

        Raises:
            RendererError: arrays of the wrong shapes, starts without both halves, or a step out of range.
        """
        encodings = np.asarray(encodings[CONTEXT] if isinstance(encodings, Mapping) else encodings, np.float32)
        noise = np.asarray(noise, np.float32)
        if encodings.ndim != 3 or noise.shape[1:] != self.latent_shape or len(encodings) != len(noise):
            raise RendererError(
                f"render needs encodings (B, 77, D) and noise (B, {', '.join(map(str, self.latent_shape))}),"
                f" got {encodings.shape} and {noise.shape}"
            )
        starts = check_starts(start_latents, start_steps, len(noise), self.latent_shape, self.settings.steps)
        if starts is None or not len(noise):
            return self._render_rows(encodings, noise, 0)
        return render_from_starts(self._render_rows, encodings, noise, starts, self._levels)

    def warm_up(self) -> None:
        """Trace (and XLA-compile) the sampler step and decoder now, with one step on a zero batch."""
        b = self.settings.batch_size
        latent = np.zeros((b, *self.latent_shape), np.float32)
        t_emb, c = self._schedule[0]
        self._decode(self._step(latent, t_emb, np.zeros(self._uncond.shape, np.float32), c))

    def _render_rows(self, encodings: np.ndarray, latents: np.ndarray, first: int) -> np.ndarray:
        """The frames of `latents` denoised from step `first`, in batches padded to batch_size."""
        b, (h, w) = self.settings.batch_size, (self.settings.height, self.settings.width)
        images = [np.zeros((0, h, w, 3), np.uint8)]
        for i in range(0, len(encodings), b):
            context, latent = pad_rows(encodings[i : i + b], b), pad_rows(latents[i : i + b], b)
            for t_emb, c in self._schedule[first:]:
                latent = self._step(latent, t_emb, context, c)
            decoded = ((self._decode(latent).numpy() + 1) / 2) * 255  # generate_image's post-processing, in numpy
            images.append(np.clip(decoded, 0, 255).astype("uint8"))
        return np.concatenate(images)[: len(encodings)]
