"""The run manifest: which job a run renders, which run of it this is, and what rendered it.

One owner for the manifest's shape: the driver writes it, the store reads and
validates it, and `status`, `assemble` and `report` take it from here. A
manifest that does not parse or does not hold together is damaged, and says so
in one line instead of failing with a `KeyError` somewhere else.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Mapping
from typing import Any

from raywalk._version import __version__
from raywalk.core.frameinfo import FRAME_FORMAT, FRAME_FORMATS
from raywalk.core.job import Job
from raywalk.core.spec import job_from_dict
from raywalk.core.stack import Stack, StackDataError, StackRecord, describe_difference
from raywalk.errors import JobError, RunLocationError, StackChangeError

LEGACY_RUN_ID = "legacy"  # runs written before run ids: their index rows carry none either


class ManifestError(RunLocationError):
    """A manifest.json that cannot be trusted (not JSON, fields missing or of the wrong type)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What `manifest.json` records.

    `run_id` names one rendering of one job into the directory: a new one is
    drawn when a run starts fresh or is forced over another job, and every
    index row carries it, so rows of an earlier run never count as done.
    `random_weights`, `renderer` and `versions` are None/empty until the first
    worker has described itself; `keyframes_sha256` is None until the prompts
    are encoded; `timing_sha256` (a job that `raywalk.core.timing.needs_table`) is
    None until its walk table is measured and stored (`timing.npy`).
    `frame_format` says how its PNGs are encoded (`FRAME_FORMATS`): a new run
    takes `FRAME_FORMAT`, a run made before text chunks reads as 1 and keeps
    it, so its resumes write the bytes its first frames have.
    `stack` is the model stack the run is rendered with (None until the first
    worker's is adopted, and in runs made before stacks were recorded);
    `stacks` every stack it has been rendered with, oldest first.
    """

    job: Job
    run_id: str
    raywalk: str = __version__
    random_weights: bool | None = None
    renderer: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    keyframes_sha256: str | None = None
    timing_sha256: str | None = None
    frame_format: int = FRAME_FORMAT
    stack: Stack | None = None
    stacks: tuple[StackRecord, ...] = ()
    updated: str = dataclasses.field(default_factory=_now)

    @property
    def fingerprint(self) -> str:
        return self.job.fingerprint()

    @property
    def num_frames(self) -> int:
        return self.job.num_frames

    def replace(self, **changes: Any) -> Manifest:
        """A copy with `changes` and a fresh `updated` time."""
        return dataclasses.replace(self, updated=_now(), **changes)

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON-ready data (the job as `Job.to_dict` gives it)."""
        return {
            "raywalk": self.raywalk,
            "job": self.job.to_dict(),
            "fingerprint": self.fingerprint,
            "num_frames": self.num_frames,
            "run_id": self.run_id,
            "random_weights": self.random_weights,
            "renderer": dict(self.renderer),
            "versions": dict(self.versions),
            "keyframes_sha256": self.keyframes_sha256,
            "timing_sha256": self.timing_sha256,
            "frame_format": self.frame_format,
            "stack": None if self.stack is None else self.stack.to_json(),
            "stacks": [record.to_json() for record in self.stacks],
            "updated": self.updated,
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> Manifest:
        """Validate parsed `manifest.json` data.

        Raises:
            ManifestError: the data is not a manifest, or its job does not match its fingerprint.
        """

        def damaged(reason: str) -> ManifestError:
            return ManifestError(
                f"{source} is damaged ({reason}); render the job file into this run again "
                "to repair it (`raywalk render JOB --out RUN`)"
            )

        if not isinstance(data, dict):
            raise damaged(f"not a JSON object but {type(data).__name__}")
        if "job" not in data:
            raise damaged("no job recorded")
        try:
            job = job_from_dict(data["job"], source=source)
        except JobError as exc:
            raise damaged(f"its job does not validate: {exc}") from None
        fingerprint = data.get("fingerprint")
        if fingerprint is not None and fingerprint != job.fingerprint():
            raise damaged("its job does not match its fingerprint")
        run_id = data.get("run_id", LEGACY_RUN_ID)
        checks: dict[str, tuple[Any, tuple[type, ...]]] = {
            "run_id": (run_id, (str,)),
            "raywalk": (data.get("raywalk", ""), (str,)),
            "random_weights": (data.get("random_weights"), (bool, type(None))),
            "renderer": (data.get("renderer", {}), (dict,)),
            "versions": (data.get("versions", {}), (dict,)),
            "keyframes_sha256": (data.get("keyframes_sha256"), (str, type(None))),
            "timing_sha256": (data.get("timing_sha256"), (str, type(None))),
            "frame_format": (data.get("frame_format", 1), (int,)),
            "updated": (data.get("updated", ""), (str,)),
        }
        for key, (value, types) in checks.items():
            if not isinstance(value, types):
                raise damaged(f"{key} is {type(value).__name__}")
        if not run_id:
            raise damaged("empty run_id")
        try:  # runs made before stacks were recorded have neither
            stack = None if data.get("stack") is None else Stack.from_json(data["stack"])
            stacks = data.get("stacks", [])
            if not isinstance(stacks, list):
                raise StackDataError(f"stacks is {type(stacks).__name__}")
            records = tuple(StackRecord.from_json(record) for record in stacks)
        except StackDataError as exc:
            raise damaged(f"its stack record is not valid: {exc}") from None
        if isinstance(data.get("frame_format"), bool) or checks["frame_format"][0] not in FRAME_FORMATS:
            raise damaged(f"frame_format {data.get('frame_format')!r} is none of {FRAME_FORMATS} (a newer raywalk?)")
        fields = {key: value for key, (value, _) in checks.items()}
        return cls(job=job, stack=stack, stacks=records, **fields)


def admit_stack(manifest: Manifest, stack: Stack, *, allow: bool, who: str = "") -> Manifest:
    """The manifest once a worker with `stack` may render for it.

    A run without a stack (fresh, or made before stacks were recorded) adopts
    it; the run's own stack changes nothing; another stack is refused unless
    `allow`, and then recorded in `stacks` as allowed. `who` names a worker that
    joined after the first (e.g. "worker 2"): an allowed stack of its own is
    recorded without becoming the run's `stack`.

    Raises:
        StackChangeError: `stack` is not the run's and `allow` is not given.
    """
    now = _now()
    if manifest.stack is None:
        return manifest.replace(stack=stack, stacks=(*manifest.stacks, StackRecord(stack, now, allowed=False)))
    if stack.id == manifest.stack.id:
        return manifest
    if not allow:
        owner, where = (f"{who}'s", f"on {who}") if who else ("the workers'", "on the workers")
        raise StackChangeError(
            f"{owner} stack differs from the run's: {describe_difference(stack, manifest.stack, where)} "
            "(--allow-stack-change renders anyway)"
        )
    known = {record.stack.id for record in manifest.stacks}
    stacks = manifest.stacks if stack.id in known else (*manifest.stacks, StackRecord(stack, now, allowed=True))
    return manifest.replace(stack=manifest.stack if who else stack, stacks=stacks)


def new_manifest(job: Job) -> Manifest:
    """The manifest of a fresh run of `job`, with a run id of its own."""
    return Manifest(job=job, run_id=uuid.uuid4().hex)
