"""The Stable Diffusion 3 renderer's settings: its constructor's arguments, validated once.

Shared by the constructor and the classmethods a driver calls without building a model
(`check_prompts`, `check_resources`, `keras_backend`), so a bad option fails the same way
at planning and on a worker.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raywalk.core.kinds import PRECISIONS
from raywalk.errors import RendererError
from raywalk.renderers.options import bind_options, check_choices
from raywalk.renderers.sd3.presets import PRESETS

CONFIGS = ("preset", "tiny")
BACKENDS = ("auto", "jax", "tensorflow", "torch")
XLA = ("auto", True, False)


@dataclass(frozen=True)
class Settings:
    """The constructor's arguments, validated."""

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
        """Refuse invalid settings.

        Raises:
            RendererError: the first invalid setting, named with what it may be.
        """
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
        check_choices("KerasHub renderer", self, choices)
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
    def bind(cls, signature: inspect.Signature, kwargs: Mapping[str, Any]) -> Settings:
        """Settings from constructor kwargs, with the defaults of the constructor's `signature`.

        Raises:
            RendererError: an unknown or invalid argument.
        """
        return cls(**bind_options("KerasHub renderer", signature, kwargs))

    @property
    def source(self) -> str:
        """What `from_preset` loads: the preset name, a handle or a staged directory."""
        return self.preset if self.weights in ("download", "random") else self.weights

    @property
    def guided(self) -> bool:
        """Classifier-free guidance runs only above 1.0, as in `TextToImage.generate`."""
        return float(self.guidance_scale) > 1.0
