"""raywalk's errors and exit codes, and the translation of Ray's and pyarrow's errors into them, in one place.

Every error a user can see is a `RaywalkError`; the CLI catches only that root
and prints its one-line message. Anything else is a bug, and shows as one (one
summary line and where the full traceback was logged). Each class carries the
exit status the CLI ends with; the table below is the whole contract, and the
README repeats it::

    0   done: every frame and output is there
    1   incomplete: the run stopped with frames missing or chunks failed
    2   bad input: a job, path, option, renderer or weights that cannot be used;
        nothing was written
    3   busy: another live driver holds the run
    4   storage: a read or write kept failing after retries
    5   cluster: the Ray cluster to join does not answer; nothing was written
    70  internal: a bug in raywalk (the message says where the traceback is)
    130 interrupted by SIGINT (Ctrl-C): the workers were stopped and the run
        released; the last line says how to finish it
    143 interrupted by SIGTERM: the same

    RaywalkError
    ├── BadInputError (2)
    │   ├── JobError             a job file or job data that cannot be run
    │   ├── RendererError        a renderer that cannot be loaded or cannot do what the job asks
    │   ├── AudioError           a soundtrack that cannot be read or muxed
    │   ├── PictureError         a picture (keyframe image, init_image) that cannot be read or used
    │   ├── StackChangeError     workers whose model stack is not the run's (without --allow-stack-change)
    │   └── RunLocationError     an --out / run URI that is not usable, holds no run or another job
    ├── IncompleteError (1)
    │   ├── RunError             a run that cannot go on (no workers, every renderer died)
    │   ├── AssembleError        outputs that cannot be built (frames missing, unreadable)
    │   └── Interrupted (130, 143)  a render stopped by SIGINT or SIGTERM (128 + the signal)
    ├── RunBusyError (3)         another driver holds the run's lock
    ├── StoreError (4)           storage that keeps failing; RunLocationError is one too
    └── ClusterError (5)         a Ray cluster that cannot be joined

Library errors become these at the boundary where raywalk calls the library
(`map_exceptions`, as httpx does), in one line (`describe`): a Ray error by the
error that caused it, not Ray's traceback. Storage calls go through
`raywalk.run.retry`, which tries transient pyarrow errors again before it
raises `StoreError`. This module imports neither Ray nor pyarrow (the core
imports it): callers name the library's classes, and Ray's errors are told
apart by their class names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

OK = 0
INCOMPLETE = 1
BAD_INPUT = 2
BUSY = 3
STORAGE = 4
CLUSTER = 5
INTERNAL = 70  # sysexits' EX_SOFTWARE
SIGINT_EXIT = 130  # 128 + the signal's number, as shells report a process a signal ended
SIGTERM_EXIT = 143

EXIT_CODES: dict[int, str] = {
    OK: "done: every frame and output is there",
    INCOMPLETE: "incomplete: the run stopped with frames missing or chunks failed",
    BAD_INPUT: "bad input: a job, path, option, renderer or weights that cannot be used; nothing was written",
    BUSY: "busy: another live driver holds the run",
    STORAGE: "storage: a read or write kept failing after retries",
    CLUSTER: "cluster: the Ray cluster to join does not answer; nothing was written",
    INTERNAL: "internal: a bug in raywalk; the message says where the traceback was logged",
    SIGINT_EXIT: "interrupted by SIGINT (Ctrl-C): the workers were stopped and the run released",
    SIGTERM_EXIT: "interrupted by SIGTERM: the workers were stopped and the run released",
}


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines included) folded into one space."""
    return " ".join(str(text).split())


def _ray_error(exc: BaseException, name: str) -> bool:
    """Whether `exc` is Ray's exception class `name` (or a subclass), without importing Ray."""
    return any(c.__name__ == name and c.__module__ == "ray.exceptions" for c in type(exc).__mro__)


def describe(exc: BaseException) -> str:
    """A library's error in one line for messages: for a Ray error, the last line of the error that caused it
    (a constructor's own error included) or, for an actor whose process died, the sentence that says why;
    for anything else its text with whitespace folded; its type's name when it says nothing."""
    if not _ray_error(exc, "RayError"):
        return one_line(exc) or type(exc).__name__
    inner = getattr(exc, "cause", None) or exc
    if _ray_error(inner, "RayTaskError"):
        inner = getattr(inner, "cause", None) or inner
    lines = [line.strip() for line in str(inner).strip().splitlines() if line.strip()]
    if _ray_error(inner, "RayActorError") and "error raised in its creation task" not in str(inner):
        why = [line for line in lines if line.startswith("The actor")]
        if why:
            return why[-1].split(". ")[0].rstrip(".")
    return lines[-1] if lines else type(inner).__name__


@contextlib.contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], Callable[[str], RaywalkError]]) -> Iterator[None]:
    """Turn a library's exceptions raised in the block into raywalk's: the first entry of `mapping` whose class
    the exception is makes the error from the exception's one line (`describe`); others pass through.

    Raises:
        RaywalkError: what `mapping` makes of the library's exception, in one line.
    """
    try:
        yield
    except Exception as exc:  # a Ray task's error is also its cause's class: a RaywalkError raised in a task too
        for source, make in mapping.items():
            if isinstance(exc, source):
                raise make(describe(exc)) from None
        raise


class RaywalkError(Exception):
    """The root of every error raywalk reports to a user; the message is one line."""

    exit_code = INCOMPLETE
    label = "error"  # what the CLI's line says before the message: "raywalk: error: ..."

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(message) or type(self).__name__)


class BadInputError(RaywalkError):
    """Input that cannot be used; raised before anything is written."""

    exit_code = BAD_INPUT


class JobError(BadInputError):
    """A job file that cannot be run; the message names the file, the field and the reason."""


class RendererError(BadInputError):
    """A renderer that cannot be loaded or cannot do what the job asks."""


class AudioError(BadInputError):
    """A soundtrack (`timing.audio`) that cannot be read, decoded or muxed."""


class PictureError(BadInputError):
    """A picture a job starts from (a keyframe `image`, `walk.init_image`) that cannot be read or used: unreadable,
    not an image, 0 pixels, over the limits (`raywalk.core.limits.MAX_PICTURE_BYTES`, `MAX_PICTURE_PIXELS`),
    animated, gone, or changed since the job was loaded."""


class StackChangeError(BadInputError):
    """Workers whose model stack (`raywalk.core.stack`) differs from the run's, or from each other's: they render
    nothing unless the change is allowed; the message names the first entry that differs, with both values."""


class IncompleteError(RaywalkError):
    """A run that ended without all its frames or outputs."""

    exit_code = INCOMPLETE


class RunError(IncompleteError):
    """A run that cannot start or go on (no workers, every renderer died)."""


class AssembleError(IncompleteError):
    """Outputs that cannot be built; the message names the culprit."""


class Interrupted(IncompleteError):
    """A render stopped by SIGINT or SIGTERM: its workers stopped and its lock released; the message says how
    to finish it. Exits 128 + the signal's number (130, 143)."""

    label = "interrupted"

    def __init__(self, message: object, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StoreError(RaywalkError):
    """A run location that cannot be read or written, after retries."""

    exit_code = STORAGE


class RunLocationError(StoreError, BadInputError):
    """A run URI that cannot be used: unreachable, a file, empty, no run there, another job's run."""

    exit_code = BAD_INPUT


class ClusterError(RaywalkError):
    """A Ray cluster that cannot be joined (an --address or RAY_ADDRESS nobody answers at); raised before
    anything is written."""

    exit_code = CLUSTER


class RunBusyError(RaywalkError):
    """Another live driver holds the run's lock."""

    exit_code = BUSY

    def __init__(self, message: object, holder: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = dict(holder or {})
