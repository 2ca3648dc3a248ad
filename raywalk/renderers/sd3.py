"""Stable Diffusion 3 and 3.5 through KerasHub as a raywalk renderer, on any Keras backend.

An encoding has two named parts, as `StableDiffusion3Backbone.encode_text_step`
returns them: ``"sequence"`` (K, 154, 4096) (CLIP-L and CLIP-G hidden states,
zero-padded where the presets leave out T5) and ``"pooled"`` (K, 2048); the
latent is (H/8, W/8, 16).

The sampler is KerasHub's own (`StableDiffusion3TextToImage.generate_step`: the
flow-matching Euler schedule of `backbone.configure_scheduler`, one
`backbone.denoise_step` per step that runs both guidance passes as one MMDiT
call of twice the batch, `backbone.decode_step`, then `generate`'s conversion to
uint8) without what a walk does not need: the text encoders do not run per
batch (the walk supplies encodings; the negative prompt is encoded once per
renderer), nothing is printed, and every batch is padded to `batch_size` so the
sampler is compiled once per worker: `jax.jit` over a stateless scope,
`tf.function` (XLA where `generate` would use it: on a GPU), or eager PyTorch
under `torch.no_grad`.

Keras, KerasHub and any backend are imported inside functions: the driver
imports this module to check a job and must stay light. The backend is
whatever ``KERAS_BACKEND`` said when Keras was first imported in the process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raywalk.errors import RendererError
from raywalk.renderers.clip_tokens import counter
from raywalk.renderers.weights import VOCAB, keras_cache, problem, unreachable

log = logging.getLogger(__name__)

PRESETS = (
    "stable_diffusion_3_medium",
    "stable_diffusion_3.5_medium",
    "stable_diffusion_3.5_large",
    "stable_diffusion_3.5_large_turbo",
)
CONFIGS = ("preset", "tiny")
BACKENDS = ("auto", "jax", "tensorflow", "torch")
PRECISIONS = ("auto", "float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16")
XLA = ("auto", True, False)
PARTS = ("sequence", "pooled")
MAX_TOKENS = 77  # CLIP context, start and end tokens included; KerasHub's preprocessor cuts the rest silently
HANDLE_SCHEMES = ("kaggle://", "hf://", "modelscope://", "gs://")
# Where each kind of handle downloads from (KerasHub's presets are kaggle:// handles).
DOWNLOAD_HOSTS = dict(
    zip(
        HANDLE_SCHEMES, ("www.kaggle.com", "huggingface.co", "www.modelscope.cn", "storage.googleapis.com"), strict=True
    )
)
MANIFEST = "raywalk-preset.sha256"  # written last by `stage_preset`: "<sha256>  <relative path>" lines
RANDOM_SEED = 0


# ----------------------------------------------------------------------------- KerasHub private API
# Everything below reaches into keras_hub.src and is tied to keras-hub 0.32.0 (the version the
# project's extra pins); check these functions first when that pin moves.


def _kerashub() -> Any:
    """`keras_hub`, made to tokenize without TensorFlow where TensorFlow is missing.

    keras-hub 0.32.0 tokenizes in Python (HF `tokenizers`) outside `tf.function`, but
    `CLIPTokenizer._set_vocabulary_and_merges_tokenizers` reads `self.vocabulary`, which only its
    TensorFlow path sets: without TensorFlow no CLIP tokenizer can be built or loaded. The
    patch sets the two attributes first (what the TensorFlow path would have done).
    """
    import keras_hub
    from keras_hub.src.models.clip.clip_tokenizer import CLIPTokenizer
    from keras_hub.src.utils.tensor_utils import tf

    original = CLIPTokenizer._set_vocabulary_and_merges_tokenizers
    if tf is None and not getattr(original, "raywalk_patch", False):

        def set_vocabulary_and_merges(self: Any, vocabulary: dict[str, int], merges: list[str]) -> None:
            self.vocabulary, self.merges = dict(vocabulary), list(merges)
            original(self, vocabulary, merges)

        set_vocabulary_and_merges.raywalk_patch = True  # type: ignore[attr-defined]
        CLIPTokenizer._set_vocabulary_and_merges_tokenizers = set_vocabulary_and_merges
    return keras_hub


def _vae_backbone(**kwargs: Any) -> Any:
    """KerasHub's VAE (`keras_hub.src.models.vae.vae_backbone.VAEBackbone`: not exported in 0.32.0)."""
    from keras_hub.src.models.vae.vae_backbone import VAEBackbone

    return VAEBackbone(**kwargs)


def _byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE uses for bytes (CLIP's base vocabulary)."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode()[1])


def _python_preprocessing(preprocessor: Any) -> Any:
    """`preprocessor` able to run without TensorFlow.

    `CLIPPreprocessor(to_lower=True)` lowercases with `tf.strings.lower`; its tokenizer's
    Python path lowercases anyway, so where TensorFlow is missing the flag is turned off and
    the token ids are the same.
    """
    from keras_hub.src.utils.tensor_utils import tf

    if tf is None:
        for clip in (preprocessor.clip_l_preprocessor, preprocessor.clip_g_preprocessor):
            clip.to_lower = False
    return preprocessor


# ----------------------------------------------------------------------------- staged presets


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify_preset(directory: str | Path) -> Path:
    """The staged preset `directory`, after checking every file its manifest lists by SHA-256.

    Raises:
        RendererError: no such directory, no manifest (staging never finished), or a file
            missing or different from what was staged (a partial or corrupt copy).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise RendererError(f"preset directory {str(directory)!r} does not exist")
    manifest = directory / MANIFEST
    hint = f"stage it with raywalk.renderers.sd3.stage_preset({str(directory)!r}, PRESET)"
    if not manifest.is_file():
        raise RendererError(f"preset directory {str(directory)!r} has no {MANIFEST} (staging never finished); {hint}")
    problems = []
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = directory / name
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise RendererError(f"{manifest}: malformed line {line[:80]!r}")
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif _sha256(path) != digest:
            problems.append(f"{name} has the wrong SHA-256 (corrupt or partial copy)")
    if problems:
        raise RendererError(f"preset directory {str(directory)!r}: {'; '.join(problems)}; {hint}")
    return directory


def _preset_source(preset: str) -> Path:
    """A local directory holding `preset`: itself if it is one, else KerasHub's download of it."""
    if Path(preset).expanduser().is_dir():
        return Path(preset).expanduser()
    handle = _handle(preset)
    if handle.startswith("kaggle://"):
        import kagglehub

        return Path(kagglehub.model_download(handle.removeprefix("kaggle://")))
    if handle.startswith("hf://"):
        import huggingface_hub

        return Path(huggingface_hub.snapshot_download(handle.removeprefix("hf://")))
    raise RendererError(
        f"cannot stage {preset!r}: only KerasHub presets, kaggle:// and hf:// handles "
        "and local directories can be staged"
    )


def _handle(preset: str) -> str:
    """The download handle of a KerasHub preset name, or `preset` itself if it is a handle."""
    if preset.startswith(HANDLE_SCHEMES):
        return preset
    if preset not in PRESETS:
        raise RendererError(f"unknown Stable Diffusion 3 preset {preset!r} (choose from {', '.join(PRESETS)})")
    import keras_hub

    return str(keras_hub.models.StableDiffusion3Backbone.presets[preset]["kaggle_handle"])


def stage_preset(directory: str | Path, preset: str) -> list[Path]:
    """Copy `preset` (a KerasHub preset name, a kaggle:// or hf:// handle, or a local preset
    directory) into `directory` and write its SHA-256 manifest last, for clusters without internet.

    A directory already staged with a good manifest is kept as it is. Files are copied under
    temporary names and renamed, then the manifest is written atomically, so an interrupted
    staging leaves no manifest and `verify_preset` refuses the directory. Returns the staged files.

    Raises:
        RendererError: the preset cannot be found or downloaded.
    """
    directory = Path(directory).expanduser()
    try:
        verify_preset(directory)
        return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    except RendererError:
        pass
    try:
        source = _preset_source(preset)
    except RendererError:
        raise
    except Exception as e:  # kagglehub's and huggingface_hub's own errors: no network, no such model
        raise RendererError(f"cannot download preset {preset!r}: {type(e).__name__}: {e}") from e
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)
    lines, staged = [], []
    for path in sorted(p for p in source.rglob("*") if p.is_file() and p.name != MANIFEST):
        name = path.relative_to(source)
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(path, partial)
        os.replace(partial, target)
        lines.append(f"{_sha256(target)}  {name.as_posix()}\n")
        staged.append(target)
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as f:
        f.writelines(lines)
    os.replace(f.name, directory / MANIFEST)
    return staged


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
    preset: str
    config: str
    negative_prompt: str
    backend: str
    xla: str | bool

    def __post_init__(self) -> None:
        for side in ("width", "height"):
            value = getattr(self, side)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 16:
                raise RendererError(f"KerasHub renderer: {side} must be a positive multiple of 16, got {value!r}")
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RendererError(f"KerasHub renderer: {name} must be a positive integer, got {value!r}")
        if isinstance(self.guidance_scale, bool) or not isinstance(self.guidance_scale, (int, float)):
            raise RendererError(f"KerasHub renderer: guidance_scale must be a number, got {self.guidance_scale!r}")
        choices = {"preset": PRESETS, "config": CONFIGS, "backend": BACKENDS, "precision": PRECISIONS, "xla": XLA}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if not any(value is a or (isinstance(a, str) and value == a) for a in allowed):
                raise RendererError(
                    f"KerasHub renderer: option {name} must be one of {', '.join(map(str, allowed))}, got {value!r}"
                )
        if not isinstance(self.weights, str) or not self.weights:
            raise RendererError(
                "KerasHub renderer: weights must be 'download', 'random', a kaggle:// or hf:// "
                f"handle or a staged preset directory, got {self.weights!r}"
            )
        if self.config == "tiny" and self.weights != "random":
            raise RendererError(
                f"KerasHub renderer: config tiny has no trained weights; set weights: random, got {self.weights!r}"
            )
        if not isinstance(self.negative_prompt, str):
            raise RendererError(f"KerasHub renderer: negative_prompt must be a string, got {self.negative_prompt!r}")

    @classmethod
    def of(cls, **kwargs: Any) -> Settings:
        """Settings from constructor kwargs, with the constructor's defaults.

        Raises:
            RendererError: an unknown or invalid argument.
        """
        try:
            bound = inspect.signature(StableDiffusion3Renderer).bind(**kwargs)
        except TypeError as e:
            raise RendererError(f"KerasHub renderer: {e}") from e
        bound.apply_defaults()
        return cls(**bound.arguments)

    @property
    def source(self) -> str:
        """What `from_preset` loads: the preset name, a handle or a staged directory."""
        return self.preset if self.weights in ("download", "random") else self.weights

    @property
    def guided(self) -> bool:
        """Classifier-free guidance runs only above 1.0, as in `TextToImage.generate`."""
        return float(self.guidance_scale) > 1.0


# ----------------------------------------------------------------------------- models


def tiny_preprocessor() -> Any:
    """A `StableDiffusion3TextToImagePreprocessor` over an in-code, character-level CLIP vocabulary.

    One merge ("th" at a word's end), else every character of a prompt is one token (so a
    prompt of up to 75 characters, spaces not counted, fits in 77 tokens). No file and no
    download; runs without TensorFlow.
    """
    keras_hub = _kerashub()
    symbols = _byte_symbols()
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
    return _python_preprocessing(keras_hub.models.StableDiffusion3TextToImagePreprocessor(*clips))


def tiny_backbone(width: int, height: int, dtype: str | None = None) -> Any:
    """A `StableDiffusion3Backbone` small enough for tests on a CPU (seconds), with seeded random weights.

    The configuration of KerasHub's own StableDiffusion3TextToImage test: a 2-layer MMDiT of
    width 32, a VAE of 32 filters per block, 2-layer CLIP-L (64) and CLIP-G (128) towers, no T5;
    the CLIP vocabulary is `tiny_preprocessor`'s. Sequences are still (154, 4096) (KerasHub pads
    CLIP's 192 features to T5's 4096 and 77 tokens to 154); pooled vectors are (192,).
    """
    import keras

    keras_hub = _kerashub()
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
        vae=_vae_backbone(
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


def _on_gpu() -> bool:
    """Whether Keras runs on a GPU here; with TensorFlow, first let it allocate GPU memory as needed."""
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # TensorFlow already initialised its GPUs: growth is fixed by then
                log.info("GPU memory growth not changed: TensorFlow already initialised %s", gpu.name)
        return bool(gpus)
    if backend == "jax":
        import jax

        return bool(jax.devices()[0].platform == "gpu")
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def _dtype(precision: str, on_gpu: bool) -> str:
    """The backbone's dtype policy: "auto" is float16 on a GPU (the tutorial's; SD3's weights are
    stored in float16) and float32 on a CPU (JAX's CPU attention has no float16)."""
    if precision != "auto":
        return precision
    return "float16" if on_gpu else "float32"


def build_models(settings: Settings, dtype: str) -> tuple[Any, Any]:
    """The backbone (at the settings' image size) and the preprocessor the settings name.

    Raises:
        RendererError: a staged directory fails its check, or KerasHub cannot load the preset.
    """
    keras_hub = _kerashub()
    if settings.config == "tiny":
        log.warning("Stable Diffusion 3 tiny configuration with RANDOM WEIGHTS: the images are noise (tests only)")
        return tiny_backbone(settings.width, settings.height, dtype), tiny_preprocessor()
    source = settings.source
    if not source.startswith(HANDLE_SCHEMES) and source not in PRESETS:
        source = str(verify_preset(source))
    random = settings.weights == "random"
    if random:
        log.warning(
            "Stable Diffusion 3 %s with RANDOM WEIGHTS: the images are noise (smoke tests only)", settings.preset
        )
        import keras

        keras.utils.set_random_seed(RANDOM_SEED)
    try:
        backbone = keras_hub.models.StableDiffusion3Backbone.from_preset(
            source, image_shape=(settings.height, settings.width, 3), dtype=dtype, load_weights=not random
        )
        preprocessor = keras_hub.models.StableDiffusion3TextToImagePreprocessor.from_preset(source)
    except Exception as e:  # KerasHub's, kagglehub's and h5py's errors: no network, no such preset, bad file
        raise RendererError(f"cannot load Stable Diffusion 3 preset {source!r}: {type(e).__name__}: {e}") from e
    return backbone, _python_preprocessing(preprocessor)


def _compile(function: Callable[..., Any], backbone: Any, xla: bool) -> Callable[..., Any]:
    """`function` compiled for the active Keras backend, as KerasHub's `make_generate_function` does."""
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import itertools

        import jax

        @jax.jit
        def stateless(state: tuple[list[Any], list[Any]], *args: Any) -> Any:
            mapping = itertools.chain(
                zip(backbone.trainable_variables, state[0], strict=True),
                zip(backbone.non_trainable_variables, state[1], strict=True),
            )
            with keras.StatelessScope(state_mapping=mapping):
                return function(*args)

        def run_jax(*args: Any) -> Any:
            state = (
                [v.value for v in backbone.trainable_variables],
                [v.value for v in backbone.non_trainable_variables],
            )
            return stateless(state, *args)

        return run_jax
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=xla)
    if backend == "torch":
        import torch

        def run_torch(*args: Any) -> Any:
            with torch.no_grad():
                return function(*args)

        return run_torch
    raise RendererError(f"KerasHub renderer: Keras backend {backend!r} is not supported (jax, tensorflow, torch)")


# ----------------------------------------------------------------------------- renderer


class StableDiffusion3Renderer:
    """Stable Diffusion 3 / 3.5 (KerasHub) as a raywalk renderer with named parts.

    ``latent_shape`` is (H/8, W/8, 16); `encode_text` returns {"sequence": (K, S, D),
    "pooled": (K, P)} float32 ((154, 4096) and (2048,) for the presets); `render` takes the
    same parts for B frames and noise (B, H/8, W/8, 16), and returns uint8 (B, H, W, 3).

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
            width,
            height,
            steps,
            guidance_scale,
            weights,
            precision,
            batch_size,
            preset,
            config,
            negative_prompt,
            backend,
            xla,
        )
        _check_backend(settings.backend)
        on_gpu = _on_gpu()
        backbone, preprocessor = build_models(settings, _dtype(precision, on_gpu))
        self._start(settings, backbone, preprocessor, on_gpu)

    @classmethod
    def from_backbone(cls, backbone: Any, preprocessor: Any, **kwargs: Any) -> StableDiffusion3Renderer:
        """A renderer around an already built backbone and preprocessor (tests and benchmarks share one);
        kwargs as for the constructor, whose `weights`, `precision` and `preset` then only label them.

        Raises:
            RendererError: invalid settings, or a backbone of another image size.
        """
        settings = Settings.of(**kwargs)
        _check_backend(settings.backend)
        if tuple(backbone.image_shape[:2]) != (settings.height, settings.width):
            raise RendererError(
                f"backbone built for {backbone.image_shape[1]}x{backbone.image_shape[0]} images, "
                f"not {settings.width}x{settings.height}"
            )
        renderer = cls.__new__(cls)
        renderer._start(settings, backbone, preprocessor, _on_gpu())
        return renderer

    @classmethod
    def keras_backend(cls, **kwargs: Any) -> str:
        """The Keras backend to start the worker with: the job's `backend` option, or with "auto" the fastest
        installed here (JAX, then PyTorch, then TensorFlow: KerasHub's SD3 runs fastest on JAX).

        Raises:
            RendererError: invalid settings.
        """
        wanted = Settings.of(**kwargs).backend
        if wanted != "auto":
            return wanted
        return next((b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None), "tensorflow")

    @classmethod
    def check_resources(cls, **kwargs: Any) -> list[str]:
        """Check what the renderer would load, where this machine can; a note for each source it cannot check.

        The tiny configuration loads nothing. A staged preset directory here is verified file by file;
        one not here is a note. A preset name or handle (``weights: download``, ``random`` with
        ``config: preset``, which still reads the preset's configuration, or a kaggle:// or hf://
        handle) needs its download host to answer within `weights.PROBE_TIMEOUT_S`, else a note with the fix.

        Raises:
            RendererError: invalid settings, or a staged preset directory here with files missing or wrong.
        """
        settings = Settings.of(**kwargs)
        if settings.config == "tiny":
            return []
        source = settings.source
        if not source.startswith(HANDLE_SCHEMES) and source not in PRESETS:
            if not Path(source).expanduser().is_dir():
                return [f"preset directory {source!r} is not on this machine"]
            verify_preset(source)
            return []
        host = next(
            (h for scheme, h in DOWNLOAD_HOSTS.items() if source.startswith(scheme)), DOWNLOAD_HOSTS["kaggle://"]
        )
        if why := unreachable(host):
            return [
                f"weights: {settings.weights} needs {source} from {host}, which this machine cannot reach ({why}); for"
                f" a cluster without internet, run `raywalk weights stage DIR --preset {source}` on a machine with"
                " internet, then set `weights: DIR`"
            ]
        return []

    @classmethod
    def check_prompts(cls, prompts: list[str], **kwargs: Any) -> None:
        """Refuse prompts (and a negative prompt) longer than CLIP's 77 tokens, naming them; builds no model.

        Tokens are counted with the tokenizer the renderer will use where that needs no download:
        the tiny configuration's, or a staged preset directory's when it exists here (the
        planning machine may not see a cluster's shared storage). Otherwise nothing is counted
        (the worker's `encode_text` still refuses an over-long prompt).

        Raises:
            RendererError: invalid settings, or a prompt of more than 77 tokens.
        """
        settings = Settings.of(**kwargs)
        if settings.config == "tiny":
            tokenizer = tiny_preprocessor().clip_l_preprocessor.tokenizer
        elif Path(settings.source).expanduser().is_dir():
            keras_hub = _kerashub()
            source = str(verify_preset(settings.source))
            try:
                preprocessor = keras_hub.models.StableDiffusion3TextToImagePreprocessor.from_preset(source)
            except Exception as e:  # KerasHub's own errors for a directory that is not a preset
                raise RendererError(f"cannot load the preprocessor of {source!r}: {type(e).__name__}: {e}") from e
            tokenizer = preprocessor.clip_l_preprocessor.tokenizer
        elif problem(vocab := keras_cache() / VOCAB.name, VOCAB) is None:
            # SD3's CLIP-L/G tokenize with OpenAI's CLIP vocabulary: counted without TensorFlow or KerasHub
            count = counter(vocab).count
            for prompt in [*prompts, settings.negative_prompt]:
                _check_length(prompt, count(prompt))
            return
        else:
            log.info(
                "prompt lengths not checked at planning: %r is not a local directory and %s is not there",
                settings.source,
                vocab,
            )
            return
        for prompt in [*prompts, settings.negative_prompt]:
            _tokens(tokenizer, prompt)

    def _start(self, settings: Settings, backbone: Any, preprocessor: Any, on_gpu: bool) -> None:
        import keras
        import keras_hub
        from keras import ops

        self.settings = settings
        self._backbone, self._preprocessor = backbone, preprocessor
        self.latent_shape: tuple[int, int, int] = tuple(backbone.latent_shape[1:])
        self.random_weights = settings.weights == "random"
        xla = bool(on_gpu if settings.xla == "auto" else settings.xla) and keras.config.backend() == "tensorflow"
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
        self._encode = _compile(backbone.encode_text_step, backbone, xla)
        self._negative_ids = self._token_ids([settings.negative_prompt] * settings.batch_size)
        negative = self._encode(self._negative_ids, self._negative_ids)
        self._negative = (negative[1], negative[3])
        self.parts = {"sequence": tuple(negative[1].shape[1:]), "pooled": tuple(negative[3].shape[1:])}
        self._num_steps = ops.convert_to_tensor(settings.steps, "int32")
        self._guidance = ops.convert_to_tensor(float(settings.guidance_scale)) if settings.guided else None
        self.traces = 0  # how often the sampler was traced (jax, tensorflow); once per worker
        guided = settings.guided

        def sample(
            latents: Any,
            sequence: Any,
            pooled: Any,
            negative_sequence: Any,
            negative_pooled: Any,
            num_steps: Any,
            guidance: Any,
        ) -> Any:
            """`StableDiffusion3TextToImage.generate_step` after its text encoding, then `generate`'s uint8."""
            self.traces += 1
            embeddings = (sequence, negative_sequence if guided else None, pooled, negative_pooled if guided else None)

            def body(step: Any, latents: Any) -> Any:
                return backbone.denoise_step(latents, embeddings, step, num_steps, guidance)

            images = backbone.decode_step(ops.fori_loop(0, num_steps, body, latents))
            images = ops.clip(ops.divide(ops.add(images, 1.0), 2.0), 0.0, 1.0)
            return ops.cast(ops.round(ops.multiply(images, 255.0)), "uint8")

        self._sample = _compile(sample, backbone, xla)

    def _token_ids(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """The preprocessor's token ids per text encoder, after refusing over-long prompts."""
        for prompt in prompts:
            _tokens(self._preprocessor.clip_l_preprocessor.tokenizer, prompt)
        ids = self._preprocessor.generate_preprocess(list(prompts))
        return {name: np.asarray(value, np.int32) for name, value in ids.items()}

    def encode_text(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """{"sequence": (K, S, D), "pooled": (K, P)} float32: `backbone.encode_text_step` of each prompt.

        Raises:
            RendererError: a prompt longer than 77 CLIP tokens.
        """
        from keras import ops

        if not prompts:
            return {name: np.zeros((0, *shape), np.float32) for name, shape in self.parts.items()}
        encoded = self._encode(self._token_ids(prompts), self._negative_ids)
        return {
            "sequence": np.asarray(ops.convert_to_numpy(encoded[0]), np.float32),
            "pooled": np.asarray(ops.convert_to_numpy(encoded[2]), np.float32),
        }

    def render(self, encodings: Mapping[str, np.ndarray], noise: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) images for parts {"sequence": (B, S, D), "pooled": (B, P)} and noise
        (B, H/8, W/8, 16), `batch_size` frames per sampler call (the last batch padded).

        Raises:
            RendererError: parts or noise of the wrong names or shapes.
        """
        from keras import ops

        noise = np.asarray(noise, np.float32)
        if not isinstance(encodings, Mapping) or set(encodings) != set(PARTS):
            got = sorted(encodings) if isinstance(encodings, Mapping) else type(encodings).__name__
            raise RendererError(f"render needs encodings with the parts {', '.join(PARTS)}, got {got}")
        parts = {name: np.asarray(encodings[name], np.float32) for name in PARTS}
        shapes = {name: (len(noise), *shape) for name, shape in self.parts.items()}
        if noise.shape[1:] != self.latent_shape or any(parts[n].shape != shapes[n] for n in PARTS):
            raise RendererError(
                f"render needs sequence {shapes['sequence']}, pooled {shapes['pooled']} and noise "
                f"{(len(noise), *self.latent_shape)}, got {parts['sequence'].shape}, {parts['pooled'].shape} "
                f"and {noise.shape}"
            )
        b = self.settings.batch_size
        self._backbone.configure_scheduler(self.settings.steps)  # the backbone's sigmas may be shared
        images = []
        for i in range(0, len(noise), b):
            # backend tensors, not numpy: eager PyTorch layers refuse numpy beside tensors in one call
            batch = [ops.convert_to_tensor(_pad(x[i : i + b], b)) for x in (noise, parts["sequence"], parts["pooled"])]
            out = self._sample(*batch, *self._negative, self._num_steps, self._guidance)
            images.append(np.asarray(ops.convert_to_numpy(out))[: len(noise) - i])
        return (
            np.concatenate(images) if images else np.zeros((0, self.settings.height, self.settings.width, 3), np.uint8)
        )

    def warm_up(self) -> None:
        """Compile the sampler now, rendering one batch of zeros."""
        b = self.settings.batch_size
        zeros = {name: np.zeros((b, *shape), np.float32) for name, shape in self.parts.items()}
        self.render(zeros, np.zeros((b, *self.latent_shape), np.float32))


def _check_backend(wanted: str) -> None:
    """Refuse to run on another Keras backend than the job asked for.

    Raises:
        RendererError: Keras was imported with another backend.
    """
    import keras

    if wanted not in ("auto", keras.config.backend()):
        raise RendererError(
            f"KerasHub renderer: the job asks for Keras backend {wanted!r}, but this process runs "
            f"{keras.config.backend()!r}; set KERAS_BACKEND={wanted} before Keras is imported"
        )


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """`rows` padded to `size` rows by repeating the last (its images are dropped)."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)]) if len(rows) < size else rows


def _tokens(tokenizer: Any, prompt: str) -> int:
    """The CLIP token count of `prompt`, start and end included.

    Raises:
        RendererError: more than 77 tokens (KerasHub would cut the prompt silently).
    """
    return _check_length(prompt, len(np.asarray(tokenizer(prompt.lower())).reshape(-1)) + 2)


def _check_length(prompt: str, count: int) -> int:
    """`count`, the CLIP tokens of `prompt`; RendererError if over 77 (KerasHub would cut it silently)."""
    if count > MAX_TOKENS:
        short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        raise RendererError(
            f"prompt {short!r} is {count} CLIP tokens long; Stable Diffusion 3 takes at most {MAX_TOKENS}"
            " (start and end tokens included)"
        )
    return count
