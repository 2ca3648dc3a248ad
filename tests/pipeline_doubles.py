"""Renderers for pipeline tests that fail: a worker that dies mid-chunk or in its constructor, a chunk that
always fails, a slow model load, prompts and weights a renderer refuses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from raywalk.errors import RendererError

from doubles import FakeRenderer


class CrashingRenderer(FakeRenderer):
    """Kills its worker process (os._exit) on its `crash_on_call`-th render call, once per
    marker file: the restarted worker renders normally."""

    def __init__(self, crash_marker: str, crash_on_call: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.marker = Path(crash_marker)
        self.crash_on_call = crash_on_call

    def render(self, encodings: np.ndarray, noise: np.ndarray) -> np.ndarray:
        if self.calls + 1 == self.crash_on_call and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().render(encodings, noise)


class CrashOnEncodeRenderer(FakeRenderer):
    """Kills its worker process while it encodes the prompts, once per marker file (a node lost while the
    driver waits for the keyframes): the restarted worker encodes normally."""

    def __init__(self, crash_marker: str, **kwargs):
        super().__init__(**kwargs)
        self.marker = Path(crash_marker)

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().encode_text(prompts)


class BrokenRenderer(FakeRenderer):
    """Raises on batches holding any of `fail_frames`, for a text walk with step_size 1: its
    prompt encodes to zeros, so frame i's encodings are all i."""

    def __init__(self, fail_frames: tuple[int, ...] = (), **kwargs):
        super().__init__(**kwargs)
        self.fail_frames = set(fail_frames)

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        return np.zeros_like(super().encode_text(prompts))

    def render(self, encodings: np.ndarray, noise: np.ndarray) -> np.ndarray:
        frames = {int(round(v)) for v in encodings[:, 0, 0]}
        if frames & self.fail_frames:
            raise RuntimeError(f"renderer exploded on frames {sorted(frames & self.fail_frames)}")
        return super().render(encodings, noise)


class SlowStartRenderer(FakeRenderer):
    """Takes `load_seconds` to build, as a model load does."""

    def __init__(self, load_seconds: float = 30.0, **kwargs):
        time.sleep(load_seconds)
        super().__init__(**kwargs)


class DyingRenderer(FakeRenderer):
    """Its worker process dies in the constructor, every time (a model that cannot load: OOM, bad driver)."""

    def __init__(self, **kwargs):
        os._exit(3)


class UnloadableRenderer(FakeRenderer):
    """Its constructor raises, as a model whose weights cannot be read does."""

    def __init__(self, **kwargs):
        raise OSError("cannot read weights: checksum mismatch in kcv_diffusion_model.h5")


class PickyRenderer(FakeRenderer):
    """Checks its prompts (at most 8 words) and its weights directory, as the KerasCV renderer does."""

    @classmethod
    def check_prompts(cls, prompts: list[str], **kwargs) -> None:
        for prompt in prompts:
            if len(prompt.split()) > 8:
                raise RendererError(f"prompt {prompt[:30]!r}... has {len(prompt.split())} words; at most 8 fit")

    @classmethod
    def check_resources(cls, weights: str = "random", **kwargs) -> list[str]:
        if weights not in ("random", "download") and not os.path.isdir(weights):
            return [f"weights directory {weights} does not exist on this worker"]
        return []
