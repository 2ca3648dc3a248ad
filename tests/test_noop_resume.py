"""A finished run resumed (or rendered) again: nothing to do is found from one read of the run, without importing
Ray, matplotlib or a model framework, and nothing is written; anything stale goes the normal way and is built."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from raywalk.run.current import finished
from raywalk.run.store import RunStore

from builders import cli, copy_run, run, write_job

HEAVY = ("ray", "matplotlib", "tensorflow", "keras", "keras_cv", "keras_hub", "jax", "torch")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, ray_connected) -> tuple[Path, Path]:
    """(a job file, its finished render through Ray): 12 frames in chunks of 4, a GIF."""
    tmp = tmp_path_factory.mktemp("rendered")
    job = write_job(tmp)
    outcome, _ = run(job, tmp / "out")
    assert outcome.complete and outcome.rendered == 12
    return job, tmp / "out"


def snapshot(out: Path) -> dict[str, tuple[str, int]]:
    """Every file of the run: its SHA-256 and modification time."""
    return {
        str(p.relative_to(out)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`raywalk ARGS` in a new interpreter under `-X importtime`: the result and the top-level packages it
    imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "raywalk.cli", *args], capture_output=True, text=True
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert lines, result.stderr
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines[1:]}  # the first is the header
    return result, modules


@pytest.mark.parametrize("command", ["resume", "resume --verify", "render"])
def test_a_no_op_resume_imports_no_ray_nor_matplotlib_and_writes_nothing(rendered, tmp_path, command):
    job, finished_run = rendered
    out = copy_run(finished_run, tmp_path / "out")  # moved: its report names the old place, so it is stale
    args = ["render", str(job), "--out", str(out)] if command == "render" else [*command.split(), str(out)]
    store = RunStore(str(out))
    assert not finished(store, store.read_job())
    normal = cli(*args)  # the normal way: Ray imported, the report built again for this place
    assert normal.returncode == 0, normal.stderr
    assert str(out) in (out / "report.html").read_text()
    assert finished(store, store.read_job())

    before = snapshot(out)
    result, modules = imported(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == normal.stdout == f"raywalk: 12 frames in {out}\n"
    assert "raywalk" in modules and "pyarrow" in modules  # the run was read
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert snapshot(out) == before


def test_a_finished_run_whose_report_is_out_of_date_is_reported_again(rendered, tmp_path):
    _, finished_run = rendered
    out = copy_run(finished_run, tmp_path / "out")
    assert cli("resume", out).returncode == 0
    store = RunStore(str(out))
    job = store.read_job()
    assert finished(store, job)

    (out / "failures").mkdir(exist_ok=True)
    (out / "failures" / "chunk-000001.json").write_text(json.dumps({"error": "a failure the report does not show"}))
    assert not finished(store, job)  # every frame is done, but the report no longer tells the whole truth
    assert cli("resume", out).returncode == 0
    assert "a failure the report does not show" in (out / "report.html").read_text()
    assert finished(store, job)

    (out / "walk.gif").unlink()
    assert not finished(store, job)
    assert cli("resume", out).returncode == 0
    assert (out / "walk.gif").exists() and finished(store, job)

    lock = {"token": "t", "host": "elsewhere", "pid": 1, "heartbeat": 0, "owner": {"command": "resume"}}
    (out / "lock.json").write_text(json.dumps(lock))
    assert not finished(store, job)  # a driver may hold it: the normal way decides (here: a stale lock, taken)
    assert cli("resume", out).returncode == 0
    assert not (out / "lock.json").exists() and finished(store, job)
