"""The test session's own set-up: where it finds the CLIP vocabulary, and how it stops without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def run_pytest_elsewhere(tmp_path: Path, home: Path) -> subprocess.CompletedProcess:
    """pytest on one tiny test file, with this conftest, in a copy of tests/ where no ../shared exists,
    HOME at `home`, KERAS_HOME and RAYWALK_CLIP_DIR unset."""
    repo = tmp_path / "checkout"
    (repo / "tests").mkdir(parents=True)
    for helper in ("conftest.py", "s3server.py"):
        shutil.copy(TESTS / helper, repo / "tests" / helper)
    (repo / "tests" / "test_tiny.py").write_text("def test_tiny(clip_vocab):\n    assert clip_vocab.is_file()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAYWALK_CLIP_DIR", "KERAS_HOME")} | {"HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "tests/test_tiny.py"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_the_vocabulary_the_session_stops_in_one_line(tmp_path, clip_vocab):
    home = tmp_path / "home"
    home.mkdir()
    assert not (tmp_path / "shared").exists()
    result = run_pytest_elsewhere(tmp_path, home)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "ImportError" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"Exit: the tests need the CLIP vocabulary {clip_vocab.name}, which is in none of"
        f" {tmp_path / 'shared' / 'clip'}, {home / '.keras' / 'datasets'}:"
        f" mkdir -p ~/.keras/datasets && cp {clip_vocab.name} ~/.keras/datasets/"
        " (or set RAYWALK_CLIP_DIR to the directory that holds it)"
    ]
    assert "passed" not in result.stdout


def test_the_vocabulary_is_found_where_the_readme_puts_it(tmp_path, clip_vocab):
    home = tmp_path / "home"
    (home / ".keras" / "datasets").mkdir(parents=True)
    shutil.copy(clip_vocab, home / ".keras" / "datasets" / clip_vocab.name)
    result = run_pytest_elsewhere(tmp_path, home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
