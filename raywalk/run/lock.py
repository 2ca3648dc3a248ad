"""One driver at a time: the run's `lock.json`, taken before the manifest is read, with a fencing token.

The lock record names the driver (host, pid, owner) and holds a random token
and a heartbeat time. Taking it:

- on a local or NFS path, the record is written to a temporary file and
  hard-linked to ``lock.json``: ``link`` fails if the name exists, so of two
  drivers starting at once exactly one gets it, and nobody ever reads a
  half-written record (an ``O_CREAT|O_EXCL`` file is visible before its content):
  `raywalk.run.fs.RunFS.create_exclusive`;
- on an object store (pyarrow.fs has no create-if-absent; S3's ``If-None-Match``
  is not exposed), and over a stale lock anywhere, the record is written (an
  atomic replace locally), and after a short settle time read back: only the
  driver whose token is still there holds the run.

A lock is stale when its heartbeat is older than `stale_after` seconds, when its
process on this host is gone (a SIGKILLed driver), or when it is not a lock
record at all (a warning names the file). The token fences: every heartbeat
reads the record first, and a driver that finds another token has been
displaced, stops, and raises `RunBusyError`. A heartbeat that cannot reach
storage is tolerated until half the stale window has passed since the last good
one, then it fails: past that point another driver may rightly take the run.

Every read and write goes through the run's files (`raywalk.run.fs`), retried.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from raywalk.errors import RunBusyError, StoreError
from raywalk.run.fs import RunFS

LOCK = "lock.json"
STALE_AFTER = 60.0
HEARTBEAT_EVERY = 10.0
SETTLE_SECONDS = 1.0  # how long a write-then-read-back acquisition waits for a competing write to land

log = logging.getLogger(__name__)


class HasFiles(Protocol):
    """What holds a run's files (a `raywalk.run.store.RunStore`)."""

    @property
    def files(self) -> RunFS: ...


def files_of(run: RunFS | HasFiles) -> RunFS:
    """The files of `run`: itself, or what it holds."""
    return run if isinstance(run, RunFS) else run.files


def _warn_log(message: str) -> None:
    log.warning(message)


def read_lock(run: RunFS | HasFiles, warn: Callable[[str], None] = _warn_log) -> dict[str, Any] | None:
    """The lock record of `run` (its files, or a store), or None if there is none or it is not a lock record
    (a warning says so).

    Raises:
        StoreError: the lock cannot be read.
    """
    files = files_of(run)
    try:
        raw = files.read_bytes(LOCK)
    except FileNotFoundError:
        return None
    try:
        record = json.loads(raw)
        float(record["heartbeat"])
        if not isinstance(record["token"], str):
            raise TypeError("token")
    except (ValueError, TypeError, KeyError) as exc:
        warn(f"{files.url(LOCK)} is not a lock record ({type(exc).__name__}: {exc}); treating the run as unlocked")
        return None
    return record


def is_stale(record: Mapping[str, Any], stale_after: float = STALE_AFTER) -> bool:
    """Whether a lock record no longer protects its run: an old heartbeat, or a dead process on this host."""
    if time.time() - float(record.get("heartbeat", 0)) > stale_after:
        return True
    return record.get("host") == socket.gethostname() and not _pid_alive(int(record.get("pid", -1)))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """The lock of one run, held by this process: `acquire`, `beat` on every wait, `release`."""

    def __init__(
        self,
        run: RunFS | HasFiles,
        owner: Mapping[str, Any],
        *,
        stale_after: float = STALE_AFTER,
        heartbeat_every: float = HEARTBEAT_EVERY,
        settle: float = SETTLE_SECONDS,
        warn: Callable[[str], None] = _warn_log,
    ) -> None:
        self.files, self.owner = files_of(run), dict(owner)
        self.stale_after, self.heartbeat_every, self.settle = stale_after, heartbeat_every, settle
        self.warn = warn
        self.record: dict[str, Any] | None = None
        self._last_good = 0.0  # monotonic time of the last heartbeat that reached storage

    @property
    def token(self) -> str | None:
        """This driver's fencing token while it holds the run."""
        return None if self.record is None else self.record["token"]

    def acquire(self) -> None:
        """Take the run for this process.

        Raises:
            RunBusyError: a live driver holds it, or another driver took it in the same instant.
            StoreError: the lock cannot be read or written.
        """
        now = time.time()
        self.record = {
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": uuid.uuid4().hex,
            "acquired": now,
            "heartbeat": now,
        }
        if self.files.create_exclusive(LOCK, self._encoded()):
            self._last_good = time.monotonic()
            return
        current = read_lock(self.files, self.warn)
        if current is not None and not is_stale(current, self.stale_after):
            self.record = None
            raise self._busy(current)
        self._write()
        time.sleep(self.settle)
        current = read_lock(self.files, self.warn)
        if current is None or current.get("token") != self.token:
            self.record = None
            if current is None:
                raise RunBusyError(f"{self.files.uri}: another driver took the run at the same moment; try again")
            raise self._busy(current)
        self._last_good = time.monotonic()

    def _encoded(self) -> bytes:
        return json.dumps(self.record, indent=2).encode()

    def _write(self) -> None:
        self.files.write_bytes(LOCK, self._encoded())

    def beat(self) -> None:
        """`heartbeat` if the last one is `heartbeat_every` seconds old; call it on every wait.

        Raises:
            RunBusyError: another driver has taken the run (this one must stop its workers).
            StoreError: storage has been unreachable for half the stale window.
        """
        if time.monotonic() - self._last_good >= self.heartbeat_every:
            self.heartbeat()

    def heartbeat(self) -> None:
        """Check the token and refresh the heartbeat time.

        Raises:
            RunBusyError: another driver has taken the run (this one must stop its workers).
            StoreError: storage has been unreachable for half the stale window.
        """
        if self.record is None:
            raise StoreError(f"{self.files.uri}: heartbeat without holding the lock")
        try:
            current = read_lock(self.files, self.warn)
            if current is not None and current.get("token") != self.token:
                self.record = None
                raise self._busy(current, displaced=True)
            self.record["heartbeat"] = time.time()
            self._write()
        except StoreError as exc:
            if time.monotonic() - self._last_good > self.stale_after / 2:
                raise StoreError(
                    f"{self.files.uri}: the run's lock could not be refreshed for {self.stale_after / 2:.0f} s: {exc}"
                ) from None
            self.warn(f"heartbeat failed, retrying: {exc}")
            return
        self._last_good = time.monotonic()

    def release(self) -> None:
        """Give the run up, if this driver still holds it.

        Raises:
            StoreError: the lock cannot be read or deleted.
        """
        if self.record is None:
            return
        token, self.record = self.token, None
        current = read_lock(self.files, self.warn)
        if current is not None and current.get("token") == token:
            self.files.delete(LOCK)

    @contextlib.contextmanager
    def held(self) -> Iterator[RunLock]:
        """Acquire, and release on the way out; a failing release never hides the error that ended the block.

        Raises:
            RunBusyError: see `acquire`; StoreError: the release failed after the block succeeded.
        """
        self.acquire()
        try:
            yield self
        except BaseException:
            try:
                self.release()
            except StoreError as exc:
                self.warn(f"could not release the run's lock (it goes stale in {self.stale_after:.0f} s): {exc}")
            raise
        self.release()

    def _busy(self, holder: Mapping[str, Any], displaced: bool = False) -> RunBusyError:
        age = time.time() - float(holder.get("heartbeat", 0))
        owner = "".join(f"{k} {v}, " for k, v in holder.get("owner", {}).items() if k not in ("host", "pid"))
        what = "was taken over" if displaced else "is in use"
        return RunBusyError(
            f"{self.files.uri} {what} by host {holder.get('host')} pid {holder.get('pid')} "
            f"({owner}heartbeat {age:.0f} s ago); wait for it to finish or stop it",
            holder,
        )
