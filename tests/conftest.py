"""Session-wide test set-up: offline KerasCV cache, quiet Ray, shared fixtures."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLIP_DIR = Path(os.environ.get("RAYWALK_CLIP_DIR", REPO.parent / "shared" / "clip"))
CLIP_VOCAB = CLIP_DIR / "bpe_simple_vocab_16e6.txt.gz"

# Before anything imports keras or ray: a private KERAS_HOME whose download
# cache already holds the CLIP vocabulary, so KerasCV's default code path finds
# it and never touches the network; Ray workers inherit this environment.
_KERAS_HOME = Path(tempfile.mkdtemp(prefix="raywalk-keras-home-"))
(_KERAS_HOME / "datasets").mkdir()
shutil.copy(CLIP_VOCAB, _KERAS_HOME / "datasets" / CLIP_VOCAB.name)
os.environ["KERAS_HOME"] = str(_KERAS_HOME)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@pytest.fixture(scope="session")
def clip_vocab() -> Path:
    """The CLIP BPE vocabulary shipped beside the repository (never committed)."""
    return CLIP_VOCAB


# Test helpers live beside the tests (test renderer, S3 server); Ray workers
# import them by path too, so they go on PYTHONPATH before Ray starts.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH")) if p
)

from s3server import s3_endpoint  # noqa: E402,F401  (session fixture)
