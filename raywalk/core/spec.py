"""Job data to a validated, immutable `Job`: the core's entry for job files and run manifests.

A job says *what* to render: the prompts, the walk through text-encoding
space, the diffusion noise, the model, how frames are chunked and which
outputs are assembled (`raywalk.core.job`). Validation is strict and happens
before anything runs, so that a typo fails in a second instead of after a night
of rendering. Every error is one line naming the file, the field and the reason.

Job text is read defensively, since one may come from anyone
(`raywalk.core.yaml_load`), and every number is bounded (`raywalk.core.limits`).
Validation does no I/O: where a job names a soundtrack whose duration and hash
it does not record, the caller passes a `probe` that reads them
(`raywalk.jobfile` does, for job files). A job is still trusted code: its
renderer is an import path that runs.
"""

from __future__ import annotations

from typing import Any

from raywalk.core.job import Job
from raywalk.core.validate import PictureProbe, Probe, SoundInfo, Validator
from raywalk.core.yaml_load import parse_yaml
from raywalk.errors import JobError

__all__ = [
    "JobError",
    "PictureProbe",
    "Probe",
    "SoundInfo",
    "job_from_dict",
    "job_from_text",
]


def job_from_dict(
    data: Any,
    source: str = "<dict>",
    default_name: str = "walk",
    probe: Probe | None = None,
    picture_probe: PictureProbe | None = None,
) -> Job:
    """Validate plain data (a parsed job file or a run manifest's job) into a `Job`.

    `probe` reads a soundtrack whose duration or sha256 the data leaves out, `picture_probe` a picture whose
    sha256, width or height it leaves out (a run manifest records them all, so neither is needed for one).

    Raises:
        JobError: the data does not validate, or names a soundtrack that is unreadable or cannot be read here.
        PictureError: it names a picture that cannot be read or used.
    """
    return Validator(source, probe, picture_probe).job(data, default_name)


def job_from_text(
    text: str, source: str, default_name: str, probe: Probe | None = None, picture_probe: PictureProbe | None = None
) -> Job:
    """Parse and validate the YAML text of a job file (`source` names it in errors and locates its soundtrack
    and pictures).

    Raises:
        JobError: the text is not a bounded YAML mapping with unique keys, or does not validate.
        PictureError: it names a picture that cannot be read or used.
    """
    return job_from_dict(
        parse_yaml(text, source), source=source, default_name=default_name, probe=probe, picture_probe=picture_probe
    )
