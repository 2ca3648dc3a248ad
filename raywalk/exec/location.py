"""The run location before a render holds it: opened and checked (`open_location`), its manifest peeked at
(`peek`), and the job's soundtrack checked against it and copied in."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from raywalk.core.job import Job
from raywalk.errors import AudioError, RunLocationError, StoreError
from raywalk.hashing import sha256_file
from raywalk.run.manifest import Manifest, ManifestError
from raywalk.run.store import RunStore, soundtrack_name


def check_soundtrack(store: RunStore, job: Job) -> None:
    """Refuse a soundtrack whose bytes are not those the job recorded (timing.sha256), unless the run already
    holds a copy of the recorded one (`resume` never needs the original file). Hashed in blocks.

    Raises:
        AudioError: the file is gone (and the run holds no copy) or its content changed.
    """
    name, path = soundtrack_name(job), job.audio_file()
    if name is None or path is None or job.timing is None or job.timing.sha256 is None:
        return
    if store.root_exists() and store.holds(name, job.timing.sha256):
        return
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read the soundtrack, and the run holds no copy: {exc.strerror}") from None
    if digest != job.timing.sha256:
        raise AudioError(
            f"{path}: changed since the job was loaded (SHA-256 {digest[:12]}..., the job recorded "
            f"{job.timing.sha256[:12]}...); load the job again"
        )


def copy_soundtrack(store: RunStore, job: Job, run_id: str) -> None:
    """Copy the job's soundtrack into the run (soundtrack/NAME), streamed and checked, unless it is there.

    Raises:
        BadInputError: the file is gone or changed (its copy is not published).
        StoreError: storage kept failing.
    """
    name, path = soundtrack_name(job), job.audio_file()
    if name is None or path is None or job.timing is None or job.timing.sha256 is None:
        return
    if not store.holds(name, job.timing.sha256):
        store.copy_in(name, path, job.timing.sha256, run_id)


def open_location(uri: str) -> RunStore:
    """The run location at `uri`, checked (reachable, not a file, creatable); nothing is created.

    Raises:
        RunLocationError: an empty URI, a file, or a location that cannot be reached or created.
    """
    try:
        store = RunStore(uri, create=False)
    except StoreError as exc:
        raise RunLocationError(str(exc)) from None
    if store.local and not store.root_exists():
        check_creatable(store.root)
    return store


def check_creatable(path: str) -> None:
    """Whether a local run directory could be created at `path` (which does not exist yet), without creating it.

    Raises:
        RunLocationError: it could not.
    """
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    try:  # access() says yes to root even on read-only mounts and /proc: try it, leaving nothing behind
        os.rmdir(tempfile.mkdtemp(prefix=".raywalk-probe-", dir=parent))
    except OSError as exc:
        raise RunLocationError(f"{path}: cannot be created in {parent}: {exc.strerror or exc}") from None


def peek(
    store: RunStore, job: Job, fingerprint: str, force: bool, warn: Callable[[str], None] | None = None
) -> tuple[Manifest | None, bool]:
    """(the run's manifest if it is a run of `job`, else None; whether the manifest is damaged).

    A damaged manifest is repaired by rendering the job again, as its message
    advises (`RunStore.adopt` keeps this job's good frames); `warn` (given once the render holds the run and
    acts on it) says so. `fingerprint` is the job's, computed once by the render.

    Raises:
        RunLocationError: the location holds a run of another job and `force` is not given.
    """
    if not store.root_exists():
        return None, False
    try:
        manifest = store.read_manifest()
    except ManifestError as exc:
        if warn is not None:  # said once, when it is acted on
            warn(f"{exc}; repairing it with this job")
        return None, True
    if manifest is None or manifest.fingerprint == fingerprint:
        return manifest, False
    if not force:
        raise RunLocationError(
            f"{store.uri} holds a run of another job ({manifest.job.name!r}, fingerprint "
            f"{manifest.fingerprint[:12]}); use a new output or --force to render over it"
        )
    return None, False
