"""A run directory that never lies and a render that never hangs in silence; bad input refused before anything is
written (issues #9 and #10)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from raywalk import load_job
from raywalk.errors import JobError, RendererError, RunBusyError, RunError, RunLocationError
from raywalk.exec.driver import WorkerSpec, render
from raywalk.exec.progress import Progress
from raywalk.run.store import RunStore

import builders
from builders import CPU_WORKER, alive_workers, cpu_worker_args, frame_bytes, wait_until, write_job
from conftest import REPO, start_ray_head, stop_ray_head


def events_of(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def render_logged(job_path: Path, out: Path, **kwargs):
    job = load_job(job_path)
    progress = Progress(job.num_frames, 0, stream=io.StringIO(), bar=False)
    kwargs.setdefault("workers", CPU_WORKER)
    try:
        return render(job, str(out), progress=progress, **kwargs), progress.stream.getvalue()
    except Exception as exc:
        exc.log = progress.stream.getvalue()  # type: ignore[attr-defined]
        raise


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300, script: bool = False):
    """`python -m raywalk.cli ARGS`; with `script`, as the `raywalk` console script runs (the current directory
    not on sys.path)."""
    launcher = (
        ["-c", "import sys; sys.path.remove(''); from raywalk.cli import main; main()"]
        if script
        else ["-m", "raywalk.cli"]
    )
    return subprocess.run(
        [sys.executable, *launcher, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


# ---------------------------------------------------------------- bad input, refused before the first write


BOOM = "raise RuntimeError('this module cannot be imported')\n"


@pytest.mark.parametrize(
    "renderer,options,prompt,expected",
    [
        ("no_such_module:Renderer", {}, None, "renderer module 'no_such_module' not found"),
        ("os:system", {}, None, "is not a class"),
        ("json:JSONDecoder", {}, None, "lacks encode_text and render"),
        ("doubles:FakeRenderer", {"sped": 2}, None, "does not take option 'sped'"),
        ("pipeline_doubles:PickyRenderer", {}, "a fox " * 10, "has 20 words; at most 8 fit"),
    ],
    ids=["not-found", "os-system", "no-render", "unknown-option", "long-prompt"],
)
def test_a_job_the_renderer_refuses_writes_nothing(ray_connected, tmp_path, renderer, options, prompt, expected):
    path = write_job(tmp_path, renderer=renderer, options=options)
    if prompt:
        data = yaml.safe_load(path.read_text())
        data["prompts"][0] = prompt
        path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    with pytest.raises(RendererError) as refused:
        render_logged(path, out)
    assert expected in str(refused.value) and "\n" not in str(refused.value)
    assert "Traceback" not in str(refused.value)
    assert not out.exists()


def test_weights_missing_on_the_workers_writes_nothing(ray_connected, tmp_path):
    path = write_job(tmp_path, renderer="pipeline_doubles:PickyRenderer")
    data = yaml.safe_load(path.read_text())
    data["model"]["weights"] = str(tmp_path / "no-weights")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RendererError, match="weights directory .*no-weights does not exist on this worker"):
        render_logged(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_outputs_are_refused_before_ray_starts(tmp_path, monkeypatch):
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started for an output that cannot be used")

    monkeypatch.setattr("raywalk.exec.session.connect", no_ray)
    job = write_job(tmp_path)
    (tmp_path / "a-file").write_text("not a run")
    cases = {
        "": "empty",
        str(tmp_path / "a-file"): "is a file",
        "/proc/raywalk/run": "cannot be created",
        "foo://bucket/run": "not a usable run location",
    }
    for uri, expected in cases.items():
        with pytest.raises(RunLocationError, match=expected):
            render(load_job(job), uri, progress=Progress(0, 0, stream=io.StringIO(), bar=False))
    assert not Path("/proc/raywalk").exists()


def test_cli_refusal_is_one_line_and_exit_2(ray_connected, tmp_path):
    (tmp_path / "boom.py").write_text(BOOM)
    job = write_job(tmp_path, renderer="boom:Renderer")
    out = tmp_path / "out"
    result = cli("render", str(job), "--out", str(out), "--address", ray_connected["address"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("raywalk: error: ") and "cannot be imported" in result.stderr
    assert not out.exists()


def test_workers_over_the_maximum_are_refused(tmp_path):
    path = write_job(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["workers"]["count"] = 5000
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(JobError, match="workers.count: must be <= 1024"):
        load_job(path)
    result = builders.cli("render", write_job(tmp_path), "--out", tmp_path / "out", "--workers", "5000")  # no Ray
    assert result.returncode == 2 and "5000" in result.stderr and not (tmp_path / "out").exists()


def test_an_infeasible_worker_on_rays_own_machine_is_refused_at_once(tmp_path):
    """A Ray that raywalk starts itself is the whole cluster: 99 GPUs can never come."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = tmp_path / "out"
    started = time.monotonic()
    result = cli("render", str(write_job(tmp_path)), "--out", str(out), "--gpus-per-worker", "99", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "99 GPU" in result.stderr and "GPUs in all" in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert time.monotonic() - started < 120 and not out.exists()


def test_an_infeasible_worker_on_a_joined_cluster_gives_up_after_the_start_timeout(ray_connected, tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(RunError, match="no node could host a worker .*99 GPU.*--start-timeout") as gave_up:
        render_logged(write_job(tmp_path), out, workers=WorkerSpec(count=1, gpus=99, cpus=0.5), start_timeout=3)
    assert time.monotonic() - started < 60
    waits = [e for e in events_of(gave_up.value.log) if e["event"] == "waiting_for_resources"]
    assert waits and "99 GPU" in waits[0]["request"] and "GPUs in all" in waits[0]["cluster"]
    assert not out.exists()


# ---------------------------------------------------------------- liveness


def test_a_renderer_dying_in_its_constructor_ends_the_run_with_the_resume_command(ray_connected, tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(RunError) as ended:
        render_logged(write_job(tmp_path, renderer="pipeline_doubles:DyingRenderer"), out)
    assert time.monotonic() - started < 90
    message = str(ended.value)
    assert "no renderer could be built" in message and "12 frames missing (0-11)" in message
    assert f"finish with: raywalk resume {out}" in message
    restarts = [e for e in events_of(ended.value.log) if e["event"] == "worker_restarting"]
    assert [e["restart"] for e in restarts] == [1, 2, 3]
    assert RunStore(str(out)).read_manifest() is not None  # the run is there to resume
    assert RunStore(str(out)).read_lock() is None


def test_a_renderer_raising_in_its_constructor_ends_the_run_with_its_error(ray_connected, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RunError) as ended:
        render_logged(write_job(tmp_path, renderer="pipeline_doubles:UnloadableRenderer"), out)
    message = str(ended.value)
    assert "no renderer could be built (OSError: cannot read weights: checksum mismatch" in message, message
    assert "12 frames missing (0-11)" in message and f"raywalk resume {out}" in message


def test_a_stalled_render_is_announced(ray_connected, tmp_path):
    job = write_job(tmp_path, frames=2, chunk_size=2, options={"seconds_per_frame": 2.0}, outputs={})
    outcome, log = render_logged(job, tmp_path / "out", watchdog=1.0)
    assert outcome.complete
    stalled = [e for e in events_of(log) if e["event"] == "stalled"]
    assert stalled and stalled[0]["in_flight"] == [0] and stalled[0]["seconds"] >= 1


def test_a_displaced_driver_stops_its_workers_and_exits_busy(ray_connected, tmp_path):
    out = tmp_path / "out"
    # 2 s a chunk: the run is far from its end when two chunks are in (4 workers would finish it in 6 s)
    job = write_job(tmp_path, frames=24, chunk_size=2, options={"seconds_per_frame": 1.0}, outputs={})
    result: dict = {}

    def drive():
        try:
            result["outcome"] = render_logged(job, out, heartbeat_every=0.2)
        except RunBusyError as exc:
            result["busy"] = exc

    thread = threading.Thread(target=drive)
    thread.start()

    def two_chunks_written() -> bool:
        assert thread.is_alive()
        return len(list((out / "index").glob("*.parquet"))) >= 2

    wait_until(two_chunks_written, timeout=120)
    # Another driver takes the run over (as after a network partition made this one look stale). A heartbeat
    # reads the record and then writes its own: a record written between the two is overwritten, and a real
    # driver taking over finds that when it reads the record back, and tries again; so does this one.
    theirs = {"host": "other-host", "pid": 4242, "token": "theirs", "owner": {"job": "walk"}}

    def taken_over() -> bool:
        if json.loads((out / "lock.json").read_text())["token"] != "theirs":
            (out / "lock.json").write_text(json.dumps(theirs | {"heartbeat": time.time() + 3600}))
        return not thread.is_alive()

    wait_until(taken_over, timeout=60, what="the displaced driver to stop")
    assert not thread.is_alive()
    assert "busy" in result and "taken over by host other-host pid 4242" in str(result["busy"])
    assert result["busy"].exit_code == 3
    written = len(list((out / "index").glob("*.parquet")))
    wait_until(lambda: not alive_workers(ray_connected), timeout=60, what="its workers to stop")
    assert len(list((out / "index").glob("*.parquet"))) == written < 12  # its workers were stopped
    assert json.loads((out / "lock.json").read_text())["token"] == "theirs"  # not released: not its lock


def test_driver_killed_while_the_renderer_loads_leaves_a_run_that_resume_finishes(ray_connected, tmp_path):
    out = tmp_path / "out"
    job = write_job(
        tmp_path, frames=6, chunk_size=3, renderer="pipeline_doubles:SlowStartRenderer", options={"load_seconds": 3.0}
    )
    args = cpu_worker_args(ray_connected["address"])
    driver = subprocess.Popen(
        [sys.executable, "-m", "raywalk.cli", "render", str(job), "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def started() -> bool:
        assert driver.poll() is None, driver.stdout.read()
        return (out / "manifest.json").exists()

    wait_until(started, timeout=120, interval=0.01)
    driver.send_signal(signal.SIGKILL)  # the renderer is still loading: nothing rendered yet
    driver.wait()
    assert not (out / "frames").exists()
    finished = cli("resume", str(out), *args)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert len(frame_bytes(out)) == 6 and (out / "walk.gif").exists()


# ---------------------------------------------------------------- custom renderers on a cluster


PROBE = textwrap.dedent('''
    """A renderer that lives in one file beside the job, nowhere on the workers' path."""
    import numpy as np


    class Probe:
        def __init__(self, width=64, height=64, steps=1, guidance_scale=7.5, weights="random",
                     precision="auto", batch_size=1):
            self.latent_shape = (height // 8, width // 8, 4)
            self.random_weights = True

        def encode_text(self, prompts):
            return np.stack([np.full((77, 8), len(p), np.float32) for p in prompts])

        def render(self, encodings, noise):
            level = (np.tanh(noise[..., :3]) * 127 + 128).astype(np.uint8)
            return level.repeat(8, axis=1).repeat(8, axis=2)
''')


def test_a_renderer_module_beside_the_job_renders_on_a_cluster_without_it(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "probe.py").write_text(PROBE)
    job = write_job(work, frames=4, chunk_size=2, renderer="probe:Probe")
    clean = {**os.environ, "PYTHONPATH": str(REPO)}  # raywalk, but neither tests/ nor the job's directory
    head, address = start_ray_head(num_cpus=2, num_gpus=0, env=clean)
    try:
        plan = cli("plan", str(job), cwd=work, env=clean, script=True)
        assert plan.returncode == 0, plan.stderr
        out = tmp_path / "out"
        result = cli(
            "render",
            str(job),
            "--out",
            str(out),
            "--address",
            address["address"],
            "--workers",
            "1",
            "--gpus-per-worker",
            "0",
            "--cpus-per-worker",
            "0.5",
            cwd=work,
            env=clean,
            script=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(frame_bytes(out)) == 4
        assert json.loads((out / "manifest.json").read_text())["random_weights"] is True
    finally:
        stop_ray_head(head)


def test_a_damaged_manifest_is_repaired_by_rendering_the_job_again(ray_connected, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{truncated")
    outcome, log = render_logged(write_job(tmp_path, frames=4, outputs={}), out)
    assert outcome.complete and outcome.rendered == 4
    assert any(e["event"] == "warning" and "damaged" in e["message"] for e in events_of(log))
    assert RunStore(str(out)).read_manifest().num_frames == 4
