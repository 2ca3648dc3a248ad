"""Renders on a cluster whose CPUs the workers hold (issue #18): no helper task (walk table, preview, assembly,
report) waits for the workers' resources; CPU workers print no CUDA probing and the driver's output no colour
codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from builders import small_job, write_job
from conftest import start_ray_head, stop_ray_head

HANG = 150  # seconds: these renders take well under a minute; a helper task waiting for a CPU never ends


def cli_render(job: Path, out: Path, address: str, workers: int, env: dict | None = None, timeout: float = HANG):
    """`raywalk render` of `workers` CPU workers of one CPU each, its output (stdout and stderr) in a file."""
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as sink:
        result = subprocess.run(
            [sys.executable, "-m", "raywalk.cli", "render", str(job), "--out", str(out), "--address", address]
            + ["--workers", str(workers), "--gpus-per-worker", "0", "--cpus-per-worker", "1"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env=env,
        )
    return result.returncode, log.read_text()


def events(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith('{"event"')]


JOBS = {
    "music-walk": lambda tmp: small_job(tmp, "music-walk"),  # the table measured from the soundtrack
    "perceptual-walk": lambda tmp: small_job(tmp, "perceptual-walk"),  # a first pass on the workers, then the table
    "previews": lambda tmp: write_job(tmp, frames=8, chunk_size=2, outputs={"gif": {"fps": 5}, "preview_every": 1}),
}


@pytest.mark.parametrize("name", list(JOBS))
def test_helper_tasks_run_while_the_workers_hold_every_cpu(ray_connected, tmp_path, name):
    cpus = int(ray.cluster_resources()["CPU"])  # as many one-CPU workers: they hold them all
    out = tmp_path / "out"
    code, log = cli_render(JOBS[name](tmp_path), out, ray_connected["address"], cpus)
    assert code == 0, log[-3000:]
    seen = [e["event"] for e in events(log)]
    assert seen.count("start") == 1 and "assembled" in seen, seen
    assert ("timing_measured" in seen) == (name != "previews")
    assert ("preview" in seen) == (name == "previews")
    assert (out / "report.html").exists()


def test_cpu_workers_probe_no_cuda_and_the_output_carries_no_colour_codes(tmp_path):
    """A cluster whose processes inherit no TensorFlow log settings (the conftest sets some for the tests)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "RAY_COLOR_PREFIX")}
    proc, head = start_ray_head(num_cpus=2, num_gpus=0, env=env)
    try:
        job = write_job(tmp_path, frames=4, chunk_size=2, renderer="doubles:TensorFlowRenderer", outputs={})
        code, log = cli_render(job, tmp_path / "out", head["address"], 1, env=env, timeout=400)
    finally:
        stop_ray_head(proc)
    assert code == 0, log[-3000:]
    assert "start" in [e["event"] for e in events(log)]
    for noise in ("cuInit", "E0000", "\x1b["):
        assert noise not in log, log[-3000:]
