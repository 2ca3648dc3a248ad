"""The files a job names that its run holds copies of (its soundtrack, its pictures), so that a resume never
needs the originals."""

from __future__ import annotations

from dataclasses import dataclass

from raywalk.core.job import Job
from raywalk.errors import AudioError, BadInputError, PictureError
from raywalk.run.layout import picture_name, soundtrack_name


@dataclass(frozen=True)
class RunInput:
    """A file the job names that the run holds a copy of (its soundtrack, each picture)."""

    name: str  # the copy's name in the run
    source: str  # where the job reads it: a local path or a pyarrow.fs URI
    sha256: str  # as the job recorded it when it was loaded
    error: type[BadInputError]  # what a bad one raises: AudioError, PictureError
    what: str  # "soundtrack", "picture", for messages


def run_inputs(job: Job) -> list[RunInput]:
    """The files `job` names that its run holds copies of: the soundtrack, then each picture (hashes recorded)."""
    inputs = []
    name, path = soundtrack_name(job), job.audio_file()
    if name is not None and path is not None and job.timing is not None and job.timing.sha256 is not None:
        inputs.append(RunInput(name, str(path), job.timing.sha256, AudioError, "soundtrack"))
    for picture in job.pictures:
        if picture.sha256 is not None:
            inputs.append(
                RunInput(picture_name(picture), job.picture_source(picture), picture.sha256, PictureError, "picture")
            )
    return inputs
