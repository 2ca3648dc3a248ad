"""The renderer contract, and loading a renderer named by a job's model section.

A renderer is any class named by import path ``package.module:Class``; a worker
builds it once with the model section's settings as keyword arguments and then
turns batches of (text encoding, noise) into images. Everything here that the
driver calls (`check_renderer`) imports the class but never builds a model, so a
bad path, a class without the contract, an option it does not take, a prompt it
cannot encode or weights it cannot load fail in one line when the job is planned
(and again, strictly, on a worker's resources before a run writes anything), not
hours into a run.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

from raywalk.core.trajectory import Encodings
from raywalk.errors import RendererError

STANDARD_KWARGS = ("width", "height", "steps", "guidance_scale", "weights", "precision", "batch_size")
CONTRACT = ("encode_text", "render")
KERAS_BACKENDS = ("jax", "tensorflow", "torch")


@runtime_checkable
class Renderer(Protocol):
    """What a worker needs from a model: text encodings in, uint8 images out.

    The class is built as ``Class(width=, height=, steps=, guidance_scale=,
    weights=, precision=, batch_size=, **options)``. It may define two
    classmethods, with the same kwargs, that must not build a model:

    - ``check_prompts(prompts, **kwargs) -> None`` raises `RendererError` for
      prompts it cannot encode;
    - ``keras_backend(**kwargs) -> str | None`` names the Keras backend the
      renderer needs in its process (``KERAS_BACKEND``: jax, tensorflow, torch),
      or None if it does not care; it runs on a worker (what is installed there
      decides "auto"), and workers are started with that backend set before
      anything imports Keras;
    - ``check_resources(**kwargs) -> list[str]`` raises `RendererError` for
      resources (weights, vocabularies, hosts) it cannot use, and returns one-line
      notes of what it cannot check on this machine (a directory not mounted
      here, a host not reachable from here).

    It may start frames from pictures (a walk's keyframe images or init image):
    a class that can defines ``encode_images``, and its ``render`` then takes
    ``start_latents`` and ``start_steps`` (`renderer_starts_from_pictures` tells;
    `check_renderer` refuses a job with pictures for a class without it):

    - ``encode_images(images) -> latents``: uint8 (M, H, W, 3) pictures already
      fitted to the renderer's width and height -> float32 (M, h, w, c) in
      `latent_shape`: the VAE's mean latents (no sampling), deterministic, any M;
    - ``render(encodings, noise, start_latents=None, start_steps=None)``:
      `start_latents` float32 (B, h, w, c), `start_steps` int (B,) in [0, steps]
      (`raywalk.core.trajectory.Starts`). Frame b with start_steps[b] == 0 is
      byte-identical to the same frame rendered without starts (its noise is its
      starting latent); with k = start_steps[b] > 0 its picture latent is noised
      to step k with the frame's `noise` and denoised from step k to the last
      (k == steps: no step runs, the VAE round trip). Frames of one batch may
      have different k. Both None: exactly the text-to-image render.

    It may state, as class attributes, what planning needs to know without
    building it (`Traits`, read by `renderer_traits`; the defaults where absent):
    ``denoiser`` (the denoising network's name, "UNet"), ``latent_channels`` (4)
    and ``guidance_optional`` (False: True if guidance at a scale of 1 or less
    runs one denoiser pass per step instead of two).
    """

    latent_shape: tuple[int, int, int]
    """(height // 8, width // 8, channels): the shape of one frame's noise (4 channels for SD 1.x/2.x, 16 for SD3)."""

    def encode_text(self, prompts: list[str]) -> Encodings:
        """The prompts' encodings, float32, one leading row per prompt in the given order: named parts
        (e.g. SD3's {"sequence": (K, 154, 4096), "pooled": (K, 2048)}), or one (K, ...) array."""
        ...

    def render(self, encodings: Encodings, noise: np.ndarray) -> np.ndarray:
        """Encodings (B, ...) per part, in the form `encode_text` gives, and noise (B, h, w, c) float32
        -> uint8 (B, H, W, 3).

        Any B: the renderer splits and pads batches itself.
        """
        ...


@runtime_checkable
class PictureRenderer(Renderer, Protocol):
    """A renderer that can start frames from pictures (the optional capability `Renderer` describes)."""

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (M, H, W, 3) pictures fitted to the renderer's size -> float32 (M, h, w, c) latents."""
        ...

    def render(
        self,
        encodings: Encodings,
        noise: np.ndarray,
        start_latents: np.ndarray | None = None,
        start_steps: np.ndarray | None = None,
    ) -> np.ndarray:
        """`Renderer.render`, each frame b starting at step start_steps[b] from start_latents[b] noised there."""
        ...


@dataclass(frozen=True)
class Traits:
    """What planning knows of a renderer class without building it: its class attributes of these names."""

    denoiser: str = "UNet"
    """The denoising network a step evaluates ("UNet" for SD 1.x/2.x, "MMDiT" for SD3)."""
    latent_channels: int = 4
    """The channels of one frame's noise (`Renderer.latent_shape`'s last)."""
    guidance_optional: bool = False
    """Whether guidance at a scale of 1 or less runs one denoiser pass per step instead of two."""


def renderer_traits(path: str) -> Traits:
    """The `Traits` the renderer class named ``package.module:Class`` states (the defaults where it states none).

    Imports the class; builds no model.

    Raises:
        RendererError: the class cannot be imported or lacks the contract, or states a trait of the wrong type.
    """
    cls = renderer_class(path)
    defaults, values = Traits(), {}
    for field in fields(Traits):
        default = getattr(defaults, field.name)
        value, kind = getattr(cls, field.name, default), type(default)
        if type(value) is not kind or (kind is int and value < 1):
            wanted = {str: "a string", int: "an int of at least 1", bool: "True or False"}[kind]
            raise RendererError(f"renderer {path!r}: {field.name} must be {wanted}, got {value!r}")
        values[field.name] = value
    return Traits(**values)


def renderer_kwargs(model: Any) -> dict[str, Any]:
    """The constructor keyword arguments for a job's model section (standard fields + options)."""
    kwargs = {name: getattr(model, name) for name in STANDARD_KWARGS}
    clash = sorted(set(model.options) & set(kwargs))
    if clash:
        raise RendererError(f"model.options.{clash[0]} duplicates model.{clash[0]}; set it once, outside options")
    kwargs.update(model.options)
    return kwargs


def renderer_class(path: str) -> type:
    """Import the renderer class named ``package.module:Class`` and check it has the contract."""
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise RendererError(f"renderer {path!r} is not an import path 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise RendererError(f"renderer module {module_name!r} not found") from e
        raise RendererError(f"renderer module {module_name!r} failed to import: {e}") from e
    except Exception as e:
        raise RendererError(f"renderer module {module_name!r} failed to import: {type(e).__name__}: {e}") from e
    cls: Any = module
    for part in class_name.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise RendererError(f"renderer module {module_name!r} has no class {class_name!r}")
    if not inspect.isclass(cls):
        raise RendererError(f"renderer {path!r} is not a class")
    missing = [name for name in CONTRACT if not callable(getattr(cls, name, None))]
    if missing:
        raise RendererError(
            f"renderer {path!r} lacks {' and '.join(missing)}; a renderer needs latent_shape, encode_text and render"
        )
    return cls


def _checked_class(model: Any) -> tuple[type, dict[str, Any]]:
    """The renderer class and its kwargs, once the kwargs are known to bind to its constructor."""
    cls = renderer_class(model.renderer)
    kwargs = renderer_kwargs(model)
    params = inspect.signature(cls).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        accepted = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            extra = sorted(accepted - set(STANDARD_KWARGS))
            raise RendererError(
                f"renderer {model.renderer!r} does not take option {unknown[0]!r}"
                f" (its options: {', '.join(extra) or 'none'})"
            )
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise RendererError(f"renderer {model.renderer!r} cannot be built with this model section: {e}") from e
    return cls, kwargs


def renderer_starts_from_pictures(path: str) -> bool:
    """Whether the renderer class named ``package.module:Class`` can start frames from pictures (it defines
    ``encode_images``; see `Renderer`). Imports the class; builds no model.

    Raises:
        RendererError: the class cannot be imported or lacks the contract.
    """
    return callable(getattr(renderer_class(path), "encode_images", None))


def check_renderer(model: Any, prompts: list[str], *, strict: bool = False, pictures: int = 0) -> list[str]:
    """Check, without building a model, that the job's renderer can be loaded, can encode its prompts, can
    start from the job's `pictures` (a count) if it has any, and has what it loads (the class's
    `check_prompts` and `check_resources`).

    Returns notes of what could not be checked on this machine, each ending in
    "render checks it on the workers". `raywalk plan` runs this on whatever
    machine it is given; `render` runs it with ``strict=True`` inside a Ray task on
    a worker's resources, where anything unchecked is refused.

    Raises:
        RendererError: the renderer cannot be loaded or built with the model section, cannot start from
            pictures the job has, a prompt cannot be encoded, a resource cannot be used, or (strict) something
            cannot be checked here.
    """
    cls, kwargs = _checked_class(model)
    if pictures and not renderer_starts_from_pictures(model.renderer):
        raise RendererError(
            f"renderer {model.renderer!r} cannot start from pictures (it has no encode_images), and the job "
            f"starts from {pictures} picture{'s' if pictures > 1 else ''}; use a renderer that can, or drop the images"
        )
    check_resources = getattr(cls, "check_resources", None)
    notes = list(check_resources(**kwargs)) if callable(check_resources) else []
    if strict and notes:  # first: a worker without the weights directory also lacks the vocabulary in it
        raise RendererError("; ".join(notes))
    check_prompts = getattr(cls, "check_prompts", None)
    if callable(check_prompts):
        check_prompts(list(prompts), **kwargs)
    return [f"{note}; render checks it on the workers" for note in notes]


def keras_backend(model: Any) -> str | None:
    """The Keras backend the job's renderer needs in its process (the class's `keras_backend`), or None.

    Raises:
        RendererError: the renderer cannot be loaded, or names no backend Keras knows.
    """
    cls, kwargs = _checked_class(model)
    choose = getattr(cls, "keras_backend", None)
    backend = choose(**kwargs) if callable(choose) else None
    if backend not in (None, *KERAS_BACKENDS):
        raise RendererError(
            f"renderer {model.renderer!r} asks for Keras backend {backend!r} (Keras has {', '.join(KERAS_BACKENDS)})"
        )
    return backend


def load_renderer(model: Any) -> Renderer:
    """Build the job's renderer (in a worker: this loads the model)."""
    cls, kwargs = _checked_class(model)
    return cls(**kwargs)
