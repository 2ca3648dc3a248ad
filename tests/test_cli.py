"""The command line explains itself, and its errors are one line with the right exit status."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from raywalk.cli import main

COMMANDS = [[], ["plan"], ["render"], ["resume"], ["status"], ["assemble"], ["weights"], ["weights", "stage"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "raywalk")
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ") and len(result.output.splitlines()) > 4
    assert "error" not in result.output


def test_a_missing_job_file_is_one_line_with_status_2(tmp_path):
    result = CliRunner().invoke(main, ["render", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"raywalk: error: {tmp_path / 'nope.yaml'}: cannot read job file: No such file or directory"
    )
    assert not (tmp_path / "out").exists()


def test_status_of_a_place_without_a_run(tmp_path):
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 2 and "no manifest.json" in result.stderr


def test_resume_of_a_path_that_does_not_exist(tmp_path):
    result = CliRunner().invoke(main, ["resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no run there" in result.stderr
    assert not (tmp_path / "nothing").exists()
