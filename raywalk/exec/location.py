"""The run location before a render holds it: opened and checked (`open_location`), its manifest peeked at
(`peek`), and the files the job names (its soundtrack, its pictures) checked against it and copied in."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from raywalk.core.job import Job
from raywalk.errors import BadInputError, RunLocationError, StoreError
from raywalk.run.inputs import run_inputs
from raywalk.run.manifest import Manifest, ManifestError
from raywalk.run.sources import source_exists
from raywalk.run.store import RunStore


def check_inputs(store: RunStore, job: Job) -> None:
    """Refuse, before anything is written, a file the job names that is gone while the run holds no copy of it.
    Nothing is read or hashed here: the job's load hashed each file once, and the copy (`copy_inputs`)
    checks that hash while it streams; a run that holds a copy never needs the original (`resume`).

    Raises:
        AudioError, PictureError: the file is not there, and the run holds no copy.
    """
    held = store.root_exists()
    for item in run_inputs(job):
        if held and store.holds(item.name, item.sha256):
            continue
        if not source_exists(item.source):
            raise item.error(f"{item.source}: cannot read the {item.what}, and the run holds no copy of it")


def copy_inputs(store: RunStore, job: Job, run_id: str) -> None:
    """Copy each file the job names into the run (soundtrack/NAME, pictures/SHA256.EXT), streamed, hashed
    while it streams and published only with the hash the job recorded, unless the run holds it already.

    Raises:
        AudioError, PictureError: the file is gone or changed since the job was loaded (its copy is not
            published).
        StoreError: storage kept failing.
    """
    for item in run_inputs(job):
        if store.holds(item.name, item.sha256):
            continue
        try:
            store.copy_in(item.name, item.source, item.sha256, run_id)
        except StoreError:
            raise
        except BadInputError as exc:
            changed = "job recorded" in str(exc)
            raise item.error(
                f"{item.source}: changed since the job was loaded (it is not the SHA-256 {item.sha256[:12]}... the "
                "job recorded); load the job again"
                if changed
                else f"{item.source}: cannot read the {item.what}: {exc}"
            ) from None


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
