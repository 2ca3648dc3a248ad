"""`StableDiffusion3Renderer`: Stable Diffusion 3 and 3.5 through KerasHub as a raywalk renderer.

The sampler is KerasHub's own (`StableDiffusion3TextToImage.generate_step`: the flow-matching
Euler schedule of `backbone.configure_scheduler`, one `backbone.denoise_step` per step that runs
both guidance passes as one MMDiT call of twice the batch, `backbone.decode_step`, then
`generate`'s conversion to uint8) without what a walk does not need: the text encoders do not
run per batch (the walk supplies encodings; the negative prompt is encoded once per renderer),
nothing is printed, and every batch is padded to `batch_size` so the sampler is compiled once
per worker (`backends.compile_for_backend`). Frames may start from pictures, as
`StableDiffusion3ImageToImage.generate_step` does (`encode_images`, `image_start`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from raywalk.errors import RendererError
from raywalk.renderers.batches import pad_rows
from raywalk.renderers.sd3 import backends
from raywalk.renderers.sd3.image_start import start_groups, unit_range
from raywalk.renderers.sd3.preprocessing import check_prompt_lengths, token_ids
from raywalk.renderers.sd3.presets import load_preset, source_notes
from raywalk.renderers.sd3.sampler import Sampler
from raywalk.renderers.sd3.settings import Settings
from raywalk.renderers.sd3.tiny import tiny_backbone, tiny_preprocessor

log = logging.getLogger(__name__)

PARTS = ("sequence", "pooled")


def build_models(settings: Settings, dtype: str) -> tuple[Any, Any]:
    """The backbone (at the settings' image size) and the preprocessor the settings name.

    Raises:
        RendererError: a staged directory fails its check, or KerasHub cannot load the preset.
    """
    if settings.config == "tiny":
        log.warning("Stable Diffusion 3 tiny configuration with RANDOM WEIGHTS: the images are noise (tests only)")
        return tiny_backbone(settings.width, settings.height, dtype), tiny_preprocessor()
    shape = (settings.height, settings.width, 3)
    return load_preset(settings.source, settings.preset, shape, dtype, random=settings.weights == "random")


class StableDiffusion3Renderer:
    """Stable Diffusion 3 / 3.5 (KerasHub) as a raywalk renderer with named parts.

    ``latent_shape`` is (H/8, W/8, 16); `encode_text` returns {"sequence": (K, S, D),
    "pooled": (K, P)} float32 ((154, 4096) and (2048,) for the presets); `render` takes the
    same parts for B frames and noise (B, H/8, W/8, 16), and returns uint8 (B, H, W, 3); it starts
    from pictures too: `encode_images` (uint8 (M, H, W, 3) -> (M, H/8, W/8, 16)) and `render`'s
    `start_latents` and `start_steps`.

    Options (the job's ``model.options``):
      preset          stable_diffusion_3_medium (default), stable_diffusion_3.5_medium,
                      stable_diffusion_3.5_large or stable_diffusion_3.5_large_turbo (4 steps, guidance 0)
      config          "preset" (the preset's architecture) or "tiny" (`tiny_backbone`, random weights only)
      negative_prompt guides away from this text instead of the empty prompt
      backend         "auto", "jax", "tensorflow" or "torch": the Keras backend this renderer needs
                      (the worker sets KERAS_BACKEND before Keras is imported; a mismatch is refused)
      xla             "auto" (as `generate`: XLA with TensorFlow on a GPU only), true or false;
                      TensorFlow only (JAX always compiles, PyTorch runs eagerly)

    `weights`: "download" (the preset, from Kaggle through KerasHub), a kaggle:// or hf:// handle,
    a directory staged by `stage_preset` (checked by SHA-256 before loading) or "random" (seeded;
    the preset's architecture, or the tiny one). `precision`: "auto" (float16 on a GPU, float32
    on a CPU), float32, float16, bfloat16, mixed_float16 or mixed_bfloat16.

    Attributes a driver may record: `random_weights`, `info`.
    """

    denoiser: ClassVar[str] = "MMDiT"
    latent_channels: ClassVar[int] = 16
    guidance_optional: ClassVar[bool] = True  # guidance <= 1 runs one MMDiT pass, as `generate` does

    def __init__(
        self,
        width: int = 512,
        height: int = 512,
        steps: int = 28,
        guidance_scale: float = 7.0,
        weights: str = "download",
        precision: str = "auto",
        batch_size: int = 1,
        preset: str = "stable_diffusion_3_medium",
        config: str = "preset",
        negative_prompt: str = "",
        backend: str = "auto",
        xla: str | bool = "auto",
    ) -> None:
        """Build the backbone and preprocessor the settings name (in a worker: this loads the model).

        Raises:
            RendererError: invalid settings, another Keras backend than `backend`, a staged
                directory that fails its SHA-256 check, or a preset KerasHub cannot load.
        """
        settings = Settings(
            width, height, steps, guidance_scale, weights, precision, batch_size, preset, config, negative_prompt,
            backend, xla,
        )  # fmt: skip
        backends.check_backend(settings.backend)
        gpu = backends.on_gpu()
        backbone, preprocessor = build_models(settings, backends.dtype_policy(precision, gpu))
        self._start(settings, backbone, preprocessor, gpu)

    @classmethod
    def settings_of(cls, **kwargs: Any) -> Settings:
        """The validated settings of constructor `kwargs`, with the constructor's defaults.

        Raises:
            RendererError: an unknown or invalid argument.
        """
        return Settings.bind(inspect.signature(cls), kwargs)

    @classmethod
    def from_backbone(cls, backbone: Any, preprocessor: Any, **kwargs: Any) -> StableDiffusion3Renderer:
        """A renderer around an already built backbone and preprocessor (tests and benchmarks share one);
        kwargs as for the constructor, whose `weights`, `precision` and `preset` then only label them.

        Raises:
            RendererError: invalid settings, or a backbone of another image size.
        """
        settings = cls.settings_of(**kwargs)
        backends.check_backend(settings.backend)
        if tuple(backbone.image_shape[:2]) != (settings.height, settings.width):
            raise RendererError(
                f"backbone built for {backbone.image_shape[1]}x{backbone.image_shape[0]} images, "
                f"not {settings.width}x{settings.height}"
            )
        renderer = cls.__new__(cls)
        renderer._start(settings, backbone, preprocessor, backends.on_gpu())
        return renderer

    @classmethod
    def keras_backend(cls, **kwargs: Any) -> str:
        """The Keras backend to start the worker with: the job's `backend` option, or with "auto" the fastest
        installed here (`backends.choose_backend`).

        Raises:
            RendererError: invalid settings.
        """
        return backends.choose_backend(cls.settings_of(**kwargs).backend)

    @classmethod
    def check_resources(cls, **kwargs: Any) -> list[str]:
        """Check what the renderer would load, where this machine can; a note for each source it cannot check.

        The tiny configuration loads nothing. A preset name or handle (``weights: download``, ``random``
        with ``config: preset``, which still reads the preset's configuration, or a handle) or a staged
        directory is checked by `presets.source_notes`.

        Raises:
            RendererError: invalid settings, or a staged preset directory here with files missing or wrong.
        """
        settings = cls.settings_of(**kwargs)
        return [] if settings.config == "tiny" else source_notes(settings.source, settings.weights)

    @classmethod
    def check_prompts(cls, prompts: list[str], **kwargs: Any) -> None:
        """Refuse prompts (and a negative prompt) longer than CLIP's 77 tokens, naming them; builds no model
        (`preprocessing.check_prompt_lengths`).

        Raises:
            RendererError: invalid settings, or a prompt of more than 77 tokens.
        """
        check_prompt_lengths(cls.settings_of(**kwargs), prompts)

    def _start(self, settings: Settings, backbone: Any, preprocessor: Any, gpu: bool) -> None:
        import keras
        import keras_hub

        self.settings = settings
        self._backbone, self._preprocessor = backbone, preprocessor
        self.latent_shape: tuple[int, int, int] = tuple(backbone.latent_shape[1:])
        self.random_weights = settings.weights == "random"
        xla = backends.use_xla(settings.xla, gpu)
        self.info = {
            "renderer": "kerashub",
            "model": "tiny" if settings.config == "tiny" else settings.preset,
            "weights": settings.weights,
            "random_weights": self.random_weights,
            "backend": keras.config.backend(),
            "precision": backbone.dtype_policy.name,
            "xla": xla,
            "guidance": "joint" if settings.guided else "none",
            "keras_hub": keras_hub.__version__,
        }
        # Compiled like the sampler: generate_step encodes inside its compiled function, and eager
        # encoding differs from compiled encoding in the last float32 bits.
        self._encode = backends.compile_for_backend(backbone.encode_text_step, backbone, xla)
        self._negative_ids = token_ids(preprocessor, [settings.negative_prompt] * settings.batch_size)
        negative = self._encode(self._negative_ids, self._negative_ids)
        self.parts = {"sequence": tuple(negative[1].shape[1:]), "pooled": tuple(negative[3].shape[1:])}
        guidance = float(settings.guidance_scale) if settings.guided else None
        self._sampler = Sampler(backbone, settings.steps, guidance, (negative[1], negative[3]), xla)

    @property
    def traces(self) -> int:
        """How often a sampler step was traced (jax, tensorflow): once per worker and step."""
        return self._sampler.traces

    def encode_text(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """{"sequence": (K, S, D), "pooled": (K, P)} float32: `backbone.encode_text_step` of each prompt.

        Raises:
            RendererError: a prompt longer than 77 CLIP tokens.
        """
        from keras import ops

        if not prompts:
            return {name: np.zeros((0, *shape), np.float32) for name, shape in self.parts.items()}
        encoded = self._encode(token_ids(self._preprocessor, prompts), self._negative_ids)
        return {
            "sequence": np.asarray(ops.convert_to_numpy(encoded[0]), np.float32),
            "pooled": np.asarray(ops.convert_to_numpy(encoded[2]), np.float32),
        }

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """float32 (M, H/8, W/8, 16): the VAE's mean latent of each uint8 (M, H, W, 3) picture, already fitted
        to the renderer's size, in the VAE's space (`image_start`), `batch_size` pictures per call.

        Raises:
            RendererError: pictures not uint8 of the renderer's size.
        """
        from keras import ops

        images = np.asarray(images)
        size = (self.settings.height, self.settings.width, 3)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != size:
            raise RendererError(
                f"encode_images needs uint8 (M, {', '.join(map(str, size))}), got {images.dtype} {images.shape}"
            )
        b = self.settings.batch_size
        latents = [np.zeros((0, *self.latent_shape), np.float32)]
        for i in range(0, len(images), b):
            out = self._sampler.encode_image(ops.convert_to_tensor(pad_rows(unit_range(images[i : i + b]), b)))
            latents.append(np.asarray(ops.convert_to_numpy(out), np.float32)[: len(images) - i])
        return np.concatenate(latents)

    def render(
        self,
        encodings: Mapping[str, np.ndarray],
        noise: np.ndarray,
        start_latents: np.ndarray | None = None,
        start_steps: np.ndarray | None = None,
    ) -> np.ndarray:
        """uint8 (B, H, W, 3) images for parts {"sequence": (B, S, D), "pooled": (B, P)} and noise
        (B, H/8, W/8, 16), `batch_size` frames per sampler call (the last batch padded).

        With starts, frame b starts from `start_latents[b]` (an `encode_images` latent, or a walk between
        them) noised to step `start_steps[b]` in [0, steps] with its noise (`image_start`); frames at step 0
        are rendered as without starts. Frames are grouped by starting step, each group padded to `batch_size`.

        Raises:
            RendererError: parts, noise or starts of the wrong names, shapes or range.
        """
        noise, parts = checked_inputs(encodings, noise, self.parts, self.latent_shape)
        groups = start_groups(start_latents, start_steps, len(noise), self.latent_shape, self.settings.steps)
        self._backbone.configure_scheduler(self.settings.steps)  # the backbone's sigmas may be shared
        images = np.zeros((len(noise), self.settings.height, self.settings.width, 3), np.uint8)
        for k, rows in groups:
            pictures = None if k == 0 else np.asarray(start_latents, np.float32)[rows]
            images[rows] = self._render_group(noise[rows], {n: p[rows] for n, p in parts.items()}, pictures, k)
        return images

    def _render_group(
        self, noise: np.ndarray, parts: dict[str, np.ndarray], pictures: np.ndarray | None, k: int
    ) -> np.ndarray:
        """The frames of one starting step `k`, `batch_size` per sampler call (text to image for k == 0)."""
        from keras import ops

        b = self.settings.batch_size
        arrays = (noise, parts["sequence"], parts["pooled"])
        images = []
        for i in range(0, len(noise), b):
            # backend tensors, not numpy: eager PyTorch layers refuse numpy beside tensors in one call
            noise_b, sequence, pooled = (ops.convert_to_tensor(pad_rows(x[i : i + b], b)) for x in arrays)
            if pictures is None:
                out = self._sampler.text_to_image(noise_b, sequence, pooled)
            else:
                start = ops.convert_to_tensor(pad_rows(pictures[i : i + b], b))
                out = self._sampler.from_start(start, noise_b, sequence, pooled, k)
            images.append(np.asarray(ops.convert_to_numpy(out))[: len(noise) - i])
        return np.concatenate(images)

    def warm_up(self) -> None:
        """Compile the text-to-image sampler now, rendering one batch of zeros (the sampler from a start
        compiles on the first frame that needs it)."""
        b = self.settings.batch_size
        zeros = {name: np.zeros((b, *shape), np.float32) for name, shape in self.parts.items()}
        self.render(zeros, np.zeros((b, *self.latent_shape), np.float32))


def checked_inputs(
    encodings: Mapping[str, np.ndarray],
    noise: np.ndarray,
    shapes: Mapping[str, tuple[int, ...]],
    latent: tuple[int, ...],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`noise` and the parts of `encodings` as float32, once their names and shapes are those `render` needs.

    Raises:
        RendererError: parts or noise of the wrong names or shapes.
    """
    noise = np.asarray(noise, np.float32)
    if not isinstance(encodings, Mapping) or set(encodings) != set(PARTS):
        got = sorted(encodings) if isinstance(encodings, Mapping) else type(encodings).__name__
        raise RendererError(f"render needs encodings with the parts {', '.join(PARTS)}, got {got}")
    parts = {name: np.asarray(encodings[name], np.float32) for name in PARTS}
    want = {name: (len(noise), *shape) for name, shape in shapes.items()}
    if noise.shape[1:] != latent or any(parts[n].shape != want[n] for n in PARTS):
        raise RendererError(
            f"render needs sequence {want['sequence']}, pooled {want['pooled']} and noise "
            f"{(len(noise), *latent)}, got {parts['sequence'].shape}, {parts['pooled'].shape} "
            f"and {noise.shape}"
        )
    return noise, parts
