"""Printed commands paste into a shell as they are: one argument per URI, whatever it holds."""

from __future__ import annotations

import subprocess

import pytest

from raywalk.core.commands import assemble_command, resume_command, status_command

URIS = ["/runs/plain", "s3://b/r?endpoint_override=h:9000&scheme=http", "/runs/with space/and'quote", "gs://b/r;x"]


@pytest.mark.parametrize("uri", URIS)
def test_a_printed_command_is_one_argument_per_word_in_a_real_shell(uri):
    for command, words in [
        (resume_command(uri), ["resume", uri]),
        (resume_command(uri, verify=True), ["resume", uri, "--verify"]),
        (status_command(uri, verify=True), ["status", uri, "--verify"]),
        (assemble_command(uri, partial=True), ["assemble", uri, "--partial"]),
    ]:
        # The shell parses the command; `printf` prints each argument it received on a line of its own.
        echoed = subprocess.run(
            ["sh", "-c", "raywalk() { printf '%s\\n' \"$@\"; }; " + command], capture_output=True, text=True, check=True
        ).stdout
        assert echoed.splitlines() == words
