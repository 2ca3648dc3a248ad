"""KerasCV Stable Diffusion (v1.4 and v2.1) as a raywalk renderer.

The sampler is KerasCV's own (`StableDiffusionBase.generate_image`: DDIM
schedule, classifier-free guidance, same timestep embedding and decoder
post-processing) without its waste: the unconditional context is encoded once
per renderer, nothing is printed per step, the conditional and unconditional
UNet passes can share one call, and every batch has the same shape so the
compiled step is traced once per worker.

TensorFlow and KerasCV are imported inside functions: the driver imports this
module to check a job (`check_renderer`) and must stay light.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from raywalk.renderer import RendererError

log = logging.getLogger(__name__)

MAX_TOKENS = 77  # CLIP context, start and end tokens included
AUTO = "auto"
PRECISIONS = (AUTO, "float32", "mixed_float16")
TRISTATE = (AUTO, True, False)


@dataclass(frozen=True)
class WeightFile:
    """One file KerasCV fetches with `keras.utils.get_file`, with the SHA-256 it checks."""

    name: str
    url: str
    sha256: str


_HF_V1 = "https://huggingface.co/fchollet/stable-diffusion/resolve/main/"
_HF_V2 = "https://huggingface.co/ianstenbit/keras-sd2.1/resolve/main/"
VOCAB = WeightFile(
    "bpe_simple_vocab_16e6.txt.gz",
    "https://github.com/openai/CLIP/blob/main/clip/bpe_simple_vocab_16e6.txt.gz?raw=true",
    "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
)
DECODER = WeightFile(
    "kcv_decoder.h5", _HF_V1 + "kcv_decoder.h5", "ad350a65cc8bc4a80c8103367e039a3329b4231c2469a1093869a345f55b1962"
)
# version -> (text encoder, diffusion model, decoder, vocabulary): what a weights directory holds.
WEIGHT_FILES: dict[str, tuple[WeightFile, ...]] = {
    "v1.4": (
        WeightFile(
            "kcv_encoder.h5",
            _HF_V1 + "kcv_encoder.h5",
            "4789e63e07c0e54d6a34a29b45ce81ece27060c499a709d556c7755b42bb0dc4",
        ),
        WeightFile(
            "kcv_diffusion_model.h5",
            _HF_V1 + "kcv_diffusion_model.h5",
            "8799ff9763de13d7f30a683d653018e114ed24a6a819667da4f5ee10f9e805fe",
        ),
        DECODER,
        VOCAB,
    ),
    "v2.1": (
        WeightFile(
            "text_encoder_v2_1.h5",
            _HF_V2 + "text_encoder_v2_1.h5",
            "985002e68704e1c5c3549de332218e99c5b9b745db7171d5f31fcd9a6089f25b",
        ),
        WeightFile(
            "diffusion_model_v2_1.h5",
            _HF_V2 + "diffusion_model_v2_1.h5",
            "c31730e91111f98fe0e2dbde4475d381b5287ebb9672b1821796146a25c5132d",
        ),
        DECODER,
        VOCAB,
    ),
}


# ----------------------------------------------------------------------------- weight files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _problem(path: Path, file: WeightFile) -> str | None:
    """Why `path` is not `file` (missing or wrong SHA-256), or None if it is."""
    if not path.is_file():
        return f"{file.name} is missing"
    if _sha256(path) != file.sha256:
        return f"{file.name} has the wrong SHA-256 (corrupt or partial copy)"
    return None


def verify_weights(directory: str | Path, version: str) -> dict[str, Path]:
    """The weight files of `version` in `directory`, by name, after checking each SHA-256."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise RendererError(f"weights directory {str(directory)!r} does not exist")
    files = {f.name: directory / f.name for f in WEIGHT_FILES[version]}
    problems = [p for f in WEIGHT_FILES[version] if (p := _problem(files[f.name], f))]
    if problems:
        raise RendererError(
            f"weights directory {str(directory)!r} ({version}): {'; '.join(problems)};"
            f" stage it with `raywalk weights stage {directory} --version {version}`"
        )
    return files


def keras_cache() -> Path:
    """Where `keras.utils.get_file` keeps KerasCV's downloads (``$KERAS_HOME/datasets``)."""
    base = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    if not os.access(base, os.W_OK):
        base = Path("/tmp/.keras")
    return base / "datasets"


def stage_weights(directory: str | Path, version: str = "v1.4", progress: bool = True) -> list[Path]:
    """Put the weight files of `version` into `directory` and verify them, for clusters without internet.

    Files already there with the right SHA-256 are kept; the others are copied
    from KerasCV's download cache when it holds a good copy, else downloaded.
    Returns the paths of the staged files.
    """
    from tqdm import tqdm

    if version not in WEIGHT_FILES:
        raise RendererError(f"unknown Stable Diffusion version {version!r} (choose from {', '.join(WEIGHT_FILES)})")
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    staged = []
    for file in WEIGHT_FILES[version]:
        target = directory / file.name
        if _problem(target, file) is None:
            staged.append(target)
            continue
        cached = keras_cache() / file.name
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        with _open_source(file, cached) as (source, total), partial.open("wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=file.name, disable=not progress
        ) as bar:
            while block := source.read(1 << 22):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
        if digest.hexdigest() != file.sha256:
            partial.unlink()
            raise RendererError(f"{file.name} from {file.url} has the wrong SHA-256; nothing staged for it")
        os.replace(partial, target)
        staged.append(target)
    return staged


@contextmanager
def _open_source(file: WeightFile, cached: Path) -> Iterator[tuple[IO[bytes], int | None]]:
    """A readable stream and its size for `file`: the verified cached copy if any, else the download."""
    if _problem(cached, file) is None:
        with cached.open("rb") as stream:
            yield stream, cached.stat().st_size
        return
    try:
        response = urllib.request.urlopen(file.url)
    except OSError as e:
        raise RendererError(f"cannot download {file.name} from {file.url}: {e}") from e
    with response:
        length = response.headers.get("Content-Length")
        yield response, int(length) if length else None


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """The constructor's arguments, validated (shared by the constructor and `check_prompts`)."""

    width: int
    height: int
    steps: int
    guidance_scale: float
    weights: str
    precision: str
    batch_size: int
    version: str
    xla: str | bool
    negative_prompt: str
    joint_guidance: str | bool

    def __post_init__(self) -> None:
        for side in ("width", "height"):
            value = getattr(self, side)
            if not isinstance(value, int) or value <= 0 or value % 64:
                raise RendererError(f"KerasCV renderer: {side} must be a positive multiple of 64, got {value!r}")
        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise RendererError(f"KerasCV renderer: {name} must be a positive integer, got {getattr(self, name)!r}")
        choices = {"version": tuple(WEIGHT_FILES), "precision": PRECISIONS, "xla": TRISTATE,
                   "joint_guidance": TRISTATE}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if not any(value is a or (isinstance(a, str) and value == a) for a in allowed):
                raise RendererError(
                    f"KerasCV renderer: option {name} must be one of {', '.join(map(str, allowed))}, got {value!r}"
                )
        if not isinstance(self.weights, str) or not self.weights:
            raise RendererError(f"KerasCV renderer: weights must be 'download', 'random' or a directory, "
                                f"got {self.weights!r}")
        if not isinstance(self.negative_prompt, str):
            raise RendererError(f"KerasCV renderer: negative_prompt must be a string, got {self.negative_prompt!r}")

    @classmethod
    def of(cls, **kwargs: Any) -> Settings:
        """Settings from constructor kwargs, with the constructor's defaults."""
        try:
            bound = inspect.signature(KerasCVRenderer).bind(**kwargs)
        except TypeError as e:
            raise RendererError(f"KerasCV renderer: {e}") from e
        bound.apply_defaults()
        return cls(**bound.arguments)

    @property
    def weights_dir(self) -> Path | None:
        return _weights_dir(self.weights)


def _weights_dir(weights: str) -> Path | None:
    """The directory named by a `weights` setting, or None for 'download' and 'random'."""
    return None if weights in ("download", "random") else Path(weights).expanduser()


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class SubModels:
    """KerasCV's Stable Diffusion parts: what `StableDiffusion` builds lazily."""

    text_encoder: Any
    diffusion_model: Any
    decoder: Any
    tokenizer: Any


def _tokenizer(weights_dir: Path | None) -> Any:
    """KerasCV's CLIP tokenizer, from the verified vocabulary in `weights_dir`, else from KerasCV's cache."""
    from keras_cv.models.stable_diffusion import SimpleTokenizer

    if weights_dir is None:
        return SimpleTokenizer()
    problem = _problem(weights_dir / VOCAB.name, VOCAB)
    if problem:
        raise RendererError(f"weights directory {str(weights_dir)!r}: {problem}")
    return SimpleTokenizer(bpe_path=str(weights_dir / VOCAB.name))


def build_models(version: str, width: int, height: int, weights: str) -> SubModels:
    """Build the sub-models at `width` x `height` with `weights`: 'download', 'random' or a directory.

    Random weights are seeded, so every worker of a smoke-test run renders the same
    images. Set the precision policy before calling this.
    """
    import keras
    from keras_cv.src.models.stable_diffusion.decoder import Decoder
    from keras_cv.src.models.stable_diffusion.diffusion_model import DiffusionModel, DiffusionModelV2
    from keras_cv.src.models.stable_diffusion.text_encoder import TextEncoder, TextEncoderV2

    text_cls, unet_cls = {"v1.4": (TextEncoder, DiffusionModel), "v2.1": (TextEncoderV2, DiffusionModelV2)}[version]
    directory = _weights_dir(weights)
    files = verify_weights(directory, version) if directory else {}
    if weights == "random":
        log.warning("KerasCV Stable Diffusion %s with RANDOM weights: the images are noise (smoke tests only)", version)
        keras.utils.set_random_seed(0)
    download = weights == "download"
    models = SubModels(
        text_encoder=text_cls(MAX_TOKENS, download_weights=download),
        diffusion_model=unet_cls(height, width, MAX_TOKENS, download_weights=download),
        decoder=Decoder(height, width, download_weights=download),
        tokenizer=_tokenizer(directory),
    )
    if directory:
        for model, file in zip((models.text_encoder, models.diffusion_model, models.decoder), WEIGHT_FILES[version]):
            model.load_weights(str(files[file.name]))
    return models


def _enable_memory_growth() -> list[Any]:
    """Let TensorFlow allocate GPU memory as needed (so two workers can share a GPU); the GPUs found."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # this process already initialised its GPUs: growth is fixed by then
            log.info("GPU memory growth not changed: TensorFlow already initialised %s", gpu.name)
    return gpus


# ----------------------------------------------------------------------------- renderer


class KerasCVRenderer:
    """KerasCV Stable Diffusion as a raywalk renderer (see `raywalk.renderer.Renderer`).

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
        settings = Settings(width, height, steps, guidance_scale, weights, precision, batch_size, version, xla,
                            negative_prompt, joint_guidance)
        import keras

        on_gpu = bool(_enable_memory_growth())
        policy = ("mixed_float16" if on_gpu else "float32") if precision == AUTO else precision
        keras.mixed_precision.set_global_policy(policy)
        self._start(settings, build_models(version, width, height, weights), on_gpu)

    @classmethod
    def from_models(cls, models: SubModels, **kwargs: Any) -> KerasCVRenderer:
        """A renderer around already built sub-models (tests and benchmarks share one set); kwargs as for the
        constructor, whose `weights` and `precision` then only label the models."""
        renderer = cls.__new__(cls)
        renderer._start(Settings.of(**kwargs), models, bool(_enable_memory_growth()))
        return renderer

    @classmethod
    def check_prompts(cls, prompts: list[str], **kwargs: Any) -> None:
        """Refuse prompts (and a negative prompt) longer than CLIP's 77 tokens, naming them; builds no model.

        The vocabulary comes from the weights directory when it exists here (the
        planning machine may not see a cluster's shared storage), else from KerasCV's cache.
        """
        settings = Settings.of(**kwargs)
        weights_dir = settings.weights_dir if settings.weights_dir and settings.weights_dir.is_dir() else None
        try:
            tokenizer = _tokenizer(weights_dir)
        except RendererError:
            raise
        except Exception as e:
            raise RendererError(f"cannot load the CLIP vocabulary to count prompt tokens: {e}") from e
        for prompt in [*prompts, settings.negative_prompt]:
            _tokens(tokenizer, prompt)

    def _start(self, settings: Settings, models: SubModels, on_gpu: bool) -> None:
        import keras
        import tensorflow as tf
        from keras_cv.models import StableDiffusion, StableDiffusionV2

        self.settings = settings
        self.latent_shape = (settings.height // 8, settings.width // 8, 4)
        self.random_weights = settings.weights == "random"
        xla = on_gpu if settings.xla == AUTO else settings.xla
        joint = True if settings.joint_guidance == AUTO else settings.joint_guidance
        self.info = {
            "renderer": "kerascv", "version": settings.version, "weights": settings.weights,
            "random_weights": self.random_weights, "precision": keras.mixed_precision.global_policy().name,
            "xla": xla, "joint_guidance": joint,
        }
        # KerasCV's model object around our sub-models: its encode_text and schedule helpers are the reference.
        sd_cls = {"v1.4": StableDiffusion, "v2.1": StableDiffusionV2}[settings.version]
        sd = sd_cls(settings.height, settings.width, jit_compile=False)
        sd._text_encoder, sd._diffusion_model = models.text_encoder, models.diffusion_model
        sd._decoder, sd._tokenizer = models.decoder, models.tokenizer
        self._sd = sd

        b = settings.batch_size
        if settings.negative_prompt:
            uncond = self.encode_text([settings.negative_prompt])
        else:
            uncond = np.asarray(sd._get_unconditional_context(), np.float32)
        self._uncond = tf.constant(np.repeat(uncond, b, axis=0))
        # KerasCV's DDIM schedule (generate_image), walked from the last timestep to the first.
        ratio = (1000 - 1) / (settings.steps - 1) if settings.steps > 1 else 1000
        timesteps = (np.arange(0, settings.steps) * ratio).round().astype(np.int64)
        alphas, alphas_prev = sd._get_initial_alphas(timesteps)
        self._schedule = [
            (
                sd._get_timestep_embedding(t, 2 * b if joint else b),
                # generate_image's Python-float coefficients, as the float32 they become in TF
                tf.constant([math.sqrt(1 - a_t), math.sqrt(a_t), math.sqrt(1.0 - a_prev), math.sqrt(a_prev)],
                            tf.float32),
            )
            for t, a_t, a_prev in reversed(list(zip(timesteps, alphas, alphas_prev)))
        ]
        unet, decoder, g = models.diffusion_model, models.decoder, settings.guidance_scale

        def guided(latent: tf.Tensor, t_emb: tf.Tensor, context: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            if joint:
                out = unet({"latent": tf.concat([latent, latent], 0), "timestep_embedding": t_emb,
                            "context": tf.concat([self._uncond, context], 0)}, training=False)
                return tf.split(tf.cast(out, tf.float32), 2)
            uncond_out = unet({"latent": latent, "timestep_embedding": t_emb, "context": self._uncond},
                              training=False)
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

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        """(K, 77, D) float32: KerasCV's `encode_text` of each prompt, squeezed and stacked in order."""
        for prompt in prompts:
            _tokens(self._sd.tokenizer, prompt)
        rows = [np.asarray(self._sd.encode_text(p), np.float32)[0] for p in prompts]
        return np.stack(rows) if rows else np.zeros((0, *self._uncond.shape[1:]), np.float32)

    def render(self, encodings: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) images for encodings (B, 77, D) and noise (B, h, w, 4), batch_size at a time."""
        encodings = np.asarray(encodings, np.float32)
        noise = np.asarray(noise, np.float32)
        if encodings.ndim != 3 or noise.shape[1:] != self.latent_shape or len(encodings) != len(noise):
            raise RendererError(
                f"render needs encodings (B, 77, D) and noise (B, {', '.join(map(str, self.latent_shape))}),"
                f" got {encodings.shape} and {noise.shape}"
            )
        b = self.settings.batch_size
        images = [self._render_batch(_pad(encodings[i : i + b], b), _pad(noise[i : i + b], b))
                  for i in range(0, len(encodings), b)]
        return np.concatenate(images)[: len(encodings)] if images else np.zeros(
            (0, self.settings.height, self.settings.width, 3), np.uint8)

    def warm_up(self) -> None:
        """Trace (and XLA-compile) the sampler step and decoder now, with one step on a zero batch."""
        b = self.settings.batch_size
        latent = np.zeros((b, *self.latent_shape), np.float32)
        t_emb, c = self._schedule[0]
        self._decode(self._step(latent, t_emb, np.zeros(self._uncond.shape, np.float32), c))

    def _render_batch(self, encodings: np.ndarray, noise: np.ndarray) -> np.ndarray:
        latent = noise
        for t_emb, c in self._schedule:
            latent = self._step(latent, t_emb, encodings, c)
        decoded = self._decode(latent).numpy()
        decoded = ((decoded + 1) / 2) * 255  # generate_image's post-processing, in numpy as there
        return np.clip(decoded, 0, 255).astype("uint8")


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """`rows` padded to `size` rows by repeating the last (its images are dropped)."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)]) if len(rows) < size else rows


def _tokens(tokenizer: Any, prompt: str) -> int:
    """The CLIP token count of `prompt`, start and end included; RendererError if over 77."""
    count = len(tokenizer.encode(prompt))
    if count > MAX_TOKENS:
        short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        raise RendererError(
            f"prompt {short!r} is {count} CLIP tokens long; Stable Diffusion takes at most {MAX_TOKENS}"
            " (start and end tokens included)"
        )
    return count
