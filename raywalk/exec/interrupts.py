"""SIGINT and SIGTERM during a render: caught in the main thread and acted on at the render's next wait."""

from __future__ import annotations

import signal
import threading
from typing import Any

from raywalk.errors import Interrupted


class Interrupts:
    """SIGINT (Ctrl-C) and SIGTERM during a render, caught in the main thread. The first is acted on at the
    render's next wait (within `POLL` seconds while it renders), where no write is half done: `check` raises
    `Interrupted`, and the way out stops the workers and releases the lock. A second one, before that, raises
    at once (a render stuck outside a wait); any more are ignored while the render stops. The handlers before
    the render come back after it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.acted = False  # an Interrupted was raised: the render is stopping
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def install(self) -> None:
        """Catch the signals (again after `ray.init`, which sets a SIGTERM handler that exits at once)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            current = signal.getsignal(sig)
            if current != self._received:
                self.previous[sig] = signal.SIG_DFL if current is None else current
                signal.signal(sig, self._received)

    def _received(self, signum: int, frame: object) -> None:
        if self.acted:
            return
        if self.signum is None:
            self.signum = signum
            return
        self.check()

    def check(self) -> None:
        """Raise `Interrupted` once a signal came (and was not acted on yet)."""
        if self.signum is not None and not self.acted:
            self.acted = True
            raise Interrupted(signal.Signals(self.signum).name, self.signum)
