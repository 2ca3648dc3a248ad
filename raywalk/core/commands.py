"""The raywalk commands that messages, logs and reports tell a person to run, shell-quoted.

One place builds them, so that a URI with `?` and `&` (an S3 endpoint in the
URI) pastes into a shell as one argument everywhere it is printed.
"""

from __future__ import annotations

import shlex


def _command(*words: str) -> str:
    return shlex.join(["raywalk", *words])


def resume_command(uri: str, verify: bool = False) -> str:
    """The command that renders only what the run at `uri` lacks (rehashing every frame with `verify`)."""
    return _command("resume", uri, *(["--verify"] if verify else []))


def status_command(uri: str, verify: bool = False) -> str:
    """The command that reports the run at `uri` (rehashing every frame with `verify`)."""
    return _command("status", uri, *(["--verify"] if verify else []))


def assemble_command(uri: str, partial: bool = False) -> str:
    """The command that builds the outputs of the run at `uri` (previews from the frames done with `partial`)."""
    return _command("assemble", uri, *(["--partial"] if partial else []))


def report_command(uri: str) -> str:
    """The command that rebuilds the run report of the run at `uri`."""
    return _command("report", uri)
