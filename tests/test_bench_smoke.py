"""Every script in bench/ runs with --smoke, for real, in seconds on a CPU, and prints its numbers.

Scripts are found by glob, so a new bench without --smoke (or without a line here saying what it
prints) fails. Helper modules that are not scripts are listed in HELPERS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
HELPERS = {"timed_renderer.py"}  # imported by the benches' jobs, not run
# What each bench prints when it ran: its numbers, in its own words (every pattern must match a line).
PRINTS: dict[str, tuple[str, ...]] = {
    "assemble.py": (r"^\s+5  raywalk-gif\s+[\d.]+\s+[\d.]+ ", r"^\s+5  raywalk-mp4\s+[\d.]+\s+[\d.]+ "),
    "chaos.py": (r'"frames_lost": 0, "all_frames_identical": true, "all_index_rows_identical": true',),
    "make_pictures.py": tuple(
        p
        for name in ("harbour", "still-life", "palette")
        for p in (rf"{name}\.png: \d+ bytes$", rf"^same bytes as {name}\.png: True$")
    ),
    "make_soundtrack.py": (r"beat\.flac: \d+ bytes$", r"^same samples as beat\.flac: True$"),
    "pacing_figure.py": (r"pacing\.png: \d+ bytes$",),
    "pictures_figure.py": (r"^frame  0: strength 0\.200, starting step 2$", r"pictures-contact\.png: \d+ bytes$"),
    "pipeline.py": (r'"frames_per_s": [\d.]+', r'"driver_peak_rss_mb": [\d.]+', r'"resume_verify_seconds": [\d.]+'),
    "sampler.py": (r"^steps   1: generate_image +[\d.]+ s/frame \| raywalk +[\d.]+ s/frame \| speed-up [\d.]+x",),
    "sampler_sd3.py": (r"^steps   1: generate +[\d.]+ s/frame \| raywalk +[\d.]+ s/frame \| speed-up [\d.]+x",),
    "sd3_gpu.sh": (r"^missing: none", r"^steps   1: generate +[\d.]+ s/frame \| raywalk +[\d.]+ s/frame"),
}
LARGE = {"sampler.py"}  # builds KerasCV's 860M-parameter UNet (about a minute)
SCRIPTS = sorted(p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh") and p.name not in HELPERS)


def test_every_bench_script_is_known():
    assert sorted(PRINTS) == SCRIPTS, "a bench script needs --smoke and a line in PRINTS"


# The longest first: they start first in the pool below.
ORDER = (
    "sampler.py",
    "pipeline.py",
    "chaos.py",
    "sampler_sd3.py",
    "sd3_gpu.sh",
    "pictures_figure.py",
    "assemble.py",
    "pacing_figure.py",
)
AT_ONCE = 2  # scripts running together: most of a smoke run is waiting (Ray starting, drivers importing, sleeps);
# three at once failed chaos.py and pipeline.py once on a 2-core machine already busy with other tests


def smoke(script: str) -> subprocess.CompletedProcess[str]:
    """`bench/SCRIPT --smoke`, for real, in a process of its own."""
    command = ["bash"] if script.endswith(".sh") else [sys.executable]
    # sd3_gpu.sh runs without TensorFlow, on its own default backend (JAX), not the session's TensorFlow
    env = {k: v for k, v in os.environ.items() if not (script == "sd3_gpu.sh" and k == "KERAS_BACKEND")}
    return subprocess.run(
        [*command, str(BENCH / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env | {"PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="module")
def smoke_runs(request) -> Iterator[dict[str, Future]]:
    """Every selected bench script's smoke run, started at once (AT_ONCE at a time): each test waits for its own."""
    selected = [
        item.callspec.params["script"]
        for item in request.session.items
        if item.module is request.module and item.originalname == "test_bench_runs_with_smoke"
    ]
    selected.sort(key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))
    with ThreadPoolExecutor(AT_ONCE, thread_name_prefix="bench") as pool:
        yield {script: pool.submit(smoke, script) for script in selected}


@pytest.mark.parametrize("script", [pytest.param(s, marks=[pytest.mark.large] if s in LARGE else []) for s in SCRIPTS])
def test_bench_runs_with_smoke(script, smoke_runs):
    result = smoke_runs[script].result()
    assert result.returncode == 0, f"{script} --smoke exited {result.returncode}: {result.stderr[-3000:]}"
    for pattern in PRINTS[script]:
        assert re.search(pattern, result.stdout, re.M), (
            f"{script} --smoke printed no {pattern!r}: {result.stdout[-3000:]}"
        )
