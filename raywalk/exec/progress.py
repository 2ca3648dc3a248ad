"""Render progress: a bar on a terminal, one JSON line per event elsewhere.

JSON lines read well in `ray job logs` and in any log collector; a bar with
frames/s and ETA reads well on a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    """Counts finished frames of a run and reports each chunk and event."""

    def __init__(self, total: int, done: int, stream: TextIO | None = None, bar: bool | None = None):
        self.stream = stream or sys.stdout
        self.total, self.done = total, done
        self.started = time.monotonic()
        self.rendered = 0
        self.restarts = 0  # worker restarts so far, shown on the bar
        use_bar = self.stream.isatty() if bar is None else bar
        self.bar = (
            tqdm(total=total, initial=done, unit="frame", file=self.stream, dynamic_ncols=True, smoothing=0.1)
            if use_bar
            else None
        )

    def begin(self, **fields: Any) -> None:
        """Rendering starts now (workers are up): the clock for frames/s and ETA starts here."""
        self.started = time.monotonic()
        self.event("start", **fields)

    def event(self, kind: str, **fields: Any) -> None:
        """A run-level event (start, retry, worker_restarting, stalled, failure, finish): a line in either mode."""
        if kind == "worker_restarting":
            self.restarts += 1
        if self.bar is not None:
            if self.restarts:
                self.bar.set_postfix_str(f"{self.restarts} worker restart(s)", refresh=False)
            details = " ".join(f"{k}={v}" for k, v in fields.items())
            self.bar.write(f"raywalk: {kind} {details}".rstrip())
        else:
            self._json({"event": kind, **fields})

    def chunk_done(self, chunk: int, frames: int, seconds: float, worker: str) -> None:
        self.done += frames
        self.rendered += frames
        if self.bar is not None:
            self.bar.update(frames)
            return
        elapsed = time.monotonic() - self.started
        rate = self.rendered / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.done
        self._json(
            {
                "event": "chunk",
                "chunk": chunk,
                "frames": frames,
                "seconds": round(seconds, 3),
                "worker": worker,
                "done": self.done,
                "total": self.total,
                "elapsed": round(elapsed, 3),
                "frames_per_second": round(rate, 3),
                "eta_seconds": round(remaining / rate, 1) if rate > 0 else None,
            }
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _json(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()
