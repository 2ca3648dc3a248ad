"""Renderers for pipeline tests that fail: a worker that dies mid-chunk, a chunk that always fails."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

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
