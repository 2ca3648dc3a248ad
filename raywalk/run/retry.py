"""The one retry loop of the run's storage calls: which errors are transient, and how long to wait.

Enforces invariant 5 of the run directory (see `raywalk.run`): every read,
write, listing and delete retries transient errors (throttling, 5xx, timeouts,
dropped connections) a bounded number of times, waiting with exponential
backoff and jitter, and fails at once, in one line, on anything else.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa

from raywalk.errors import StoreError, describe

log = logging.getLogger(__name__)

T = TypeVar("T")

# The retry budget of every storage call: RETRY_ATTEMPTS tries, waiting RETRY_BACKOFF
# seconds after the first failure, doubling up to RETRY_MAX_DELAY, each wait with
# jitter (half to all of it). Environment variables let tests and users change them.
RETRY_ATTEMPTS = int(os.environ.get("RAYWALK_STORE_ATTEMPTS", "6"))
RETRY_BACKOFF = float(os.environ.get("RAYWALK_STORE_BACKOFF", "0.2"))
RETRY_MAX_DELAY = 5.0
OPEN_DEADLINE = 8.0  # seconds: checking a location retries only within this, so a bad --out fails fast

# Errors worth another try: throttling, server errors, timeouts, dropped
# connections, as pyarrow words them for S3 (AWS SDK error names or
# "[code 503]"), GCS (google::cloud::Status codes) and local/NFS paths (errno).
_TRANSIENT = re.compile(
    r"SLOW_?DOWN|THROTTL|TOO_?MANY_?REQUESTS|SERVICE_?UNAVAILABLE|INTERNAL_?(FAILURE|ERROR)|REQUEST_?TIMEOUT"
    r"|NETWORK_CONNECTION|\[code 5\d\d\]|HTTP status 5\d\d|\b(UNAVAILABLE|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED)\b"
    r"|timed? ?out|connection (reset|refused|aborted)|broken pipe",
    re.IGNORECASE,
)
_PERMANENT = re.compile(r"NO_?SUCH_?BUCKET|ACCESS_?DENIED|FORBIDDEN|NOT_?FOUND|\[code 40[134]\]", re.IGNORECASE)
_TRANSIENT_ERRNOS = {
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.EAGAIN,
}


def transient(exc: BaseException) -> bool:
    """Whether a storage error may pass if the call is tried again (throttling, 5xx, timeouts, dropped links)."""
    if isinstance(exc, FileNotFoundError):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)) or getattr(exc, "errno", None) in _TRANSIENT_ERRNOS:
        return True
    text = str(exc)
    return bool(_TRANSIENT.search(text)) and not _PERMANENT.search(text)


def retry(
    where: str,
    what: str,
    call: Callable[[], T],
    *,
    missing_ok: bool = False,
    deadline: float | None = None,
    error: type[StoreError] = StoreError,
) -> T:
    """`call()`, tried again on transient storage errors within the retry budget, waiting with backoff and jitter.

    Raises:
        FileNotFoundError: with `missing_ok`, what `call` looked for does not exist.
        StoreError: (or `error`) anything else, at once if it is not transient, else once the budget
            or `deadline` (seconds from now) is spent; one line naming `where` and `what`.
    """
    started, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        tried = time.monotonic()
        try:
            return call()
        except (OSError, pa.ArrowException) as exc:
            if missing_ok and isinstance(exc, FileNotFoundError):
                raise
            delay = min(RETRY_MAX_DELAY, RETRY_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            now = time.monotonic()
            over = deadline is not None and now - started + delay + (now - tried) > deadline
            if not transient(exc) or attempt == RETRY_ATTEMPTS or over:
                tries = f" (tried {attempt} times)" if attempt > 1 else ""
                raise error(f"{where}: {what}: {describe(exc)}{tries}") from None
            log.info("%s: %s: %s; trying again in %.1f s", where, what, describe(exc), delay)
            time.sleep(delay)
