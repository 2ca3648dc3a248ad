"""The KerasCV renderer's settings: its constructor's arguments, validated once.

Shared by the constructor, `check_prompts` and `check_resources`, so a bad option fails the same
way at planning and on a worker.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raywalk.errors import RendererError
from raywalk.renderers.options import bind_options, check_choices
from raywalk.renderers.weights import WEIGHT_FILES

AUTO = "auto"
# KerasCV's sub-models take a global Keras policy: float16 and bfloat16 weights are not among them,
# so this is a subset of the job's `raywalk.core.spec.PRECISIONS`.
PRECISIONS = (AUTO, "float32", "mixed_float16")
TRISTATE = (AUTO, True, False)


def weights_dir(weights: str) -> Path | None:
    """The directory named by a `weights` setting, or None for 'download' and 'random'."""
    return None if weights in ("download", "random") else Path(weights).expanduser()


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
    version: str
    xla: str | bool
    negative_prompt: str
    joint_guidance: str | bool

    def __post_init__(self) -> None:
        """Refuse invalid settings.

        Raises:
            RendererError: the first invalid setting, named with what it may be.
        """
        for side in ("width", "height"):
            value = getattr(self, side)
            if not isinstance(value, int) or value <= 0 or value % 64:
                raise RendererError(f"KerasCV renderer: {side} must be a positive multiple of 64, got {value!r}")
        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise RendererError(f"KerasCV renderer: {name} must be a positive integer, got {getattr(self, name)!r}")
        choices = {"version": tuple(WEIGHT_FILES), "precision": PRECISIONS, "xla": TRISTATE, "joint_guidance": TRISTATE}
        check_choices("KerasCV renderer", self, choices)
        if not isinstance(self.weights, str) or not self.weights:
            raise RendererError(
                f"KerasCV renderer: weights must be 'download', 'random' or a directory, got {self.weights!r}"
            )
        if not isinstance(self.negative_prompt, str):
            raise RendererError(f"KerasCV renderer: negative_prompt must be a string, got {self.negative_prompt!r}")

    @classmethod
    def bind(cls, signature: inspect.Signature, kwargs: Mapping[str, Any]) -> Settings:
        """Settings from constructor kwargs, with the defaults of the constructor's `signature`.

        Raises:
            RendererError: an unknown or invalid argument.
        """
        return cls(**bind_options("KerasCV renderer", signature, kwargs))

    @property
    def weights_dir(self) -> Path | None:
        """The weights directory, or None for 'download' and 'random'."""
        return weights_dir(self.weights)
