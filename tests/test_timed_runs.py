"""Timed walks in real runs (issue #12): the shipped timing jobs render and resume byte-identically, the music
walk's MP4 carries its soundtrack, perceptual pacing evens out a walk, and the soundtrack lives in the run."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from raywalk import load_job
from raywalk.core.pacing import first_pass_job, max_jump, smoothness
from raywalk.errors import AudioError, BadInputError
from raywalk.exec.driver import render, resume
from raywalk.exec.progress import Progress
from raywalk.outputs.assemble import assemble_job
from raywalk.outputs.soundtrack import audio_seconds, video_frames
from raywalk.report.page import build_report
from raywalk.report.status import run_status
from raywalk.run.manifest import new_manifest
from raywalk.run.store import SMOOTHNESS, RunStore

from builders import CPU_WORKER, SMALL, frame_bytes, index_rows, quiet, small_job, wait_until

CLI_WORKER = ["--workers", "1", "--gpus-per-worker", "0", "--cpus-per-worker", "0.5"]


def render_quietly(job_path: Path, out: Path):
    job = load_job(job_path)
    return render(job, str(out), workers=CPU_WORKER, progress=Progress(job.num_frames, 0, stream=io.StringIO()))


def check_soundtrack(mp4: Path, fps: int, frames: int) -> None:
    """The MP4 holds `frames` frames and audio that lasts as long, within one frame."""
    assert video_frames(mp4) == frames
    assert abs(audio_seconds(mp4) - frames / fps) <= 1 / fps, (audio_seconds(mp4), frames / fps)


@pytest.mark.parametrize("name", list(SMALL))
def test_a_shipped_timing_job_renders_and_resumes_byte_identically_after_a_sigkill(ray_connected, tmp_path, name):
    started = time.monotonic()
    clean_dir, killed_dir = tmp_path / "clean", tmp_path / "killed"
    clean_dir.mkdir(), killed_dir.mkdir()
    clean, killed = clean_dir / "out", killed_dir / "out"
    outcome = render_quietly(small_job(clean_dir, name, seconds_per_frame=0.1), clean)
    job = load_job(small_job(killed_dir, name, seconds_per_frame=0.1))
    assert outcome.complete and outcome.rendered == job.num_frames
    manifest = RunStore(str(clean)).require_manifest()
    assert len(frame_bytes(clean)) == job.num_frames and (clean / "smoothness.parquet").exists()
    for kind, file in job.output_files().items():
        assert (clean / file).exists(), kind
    assert (manifest.timing_sha256 is not None) == (name != "keyframe-times")  # keyframes alone need no table
    assert (clean / "soundtrack" / "beat.flac").exists() == (name == "music-walk")
    samples = first_pass_job(job).num_frames if job.pacing else 0
    assert len(list((clean / "pacing").glob("*.png"))) == samples
    assert "smoothness 1 − Gini = " in run_status(str(clean))

    driver = subprocess.Popen(
        [sys.executable, "-m", "raywalk.cli", "render", str(killed_dir / f"{name}.yaml"), "--out", str(killed)]
        + ["--address", ray_connected["address"], *CLI_WORKER],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def a_chunk_written() -> bool:
        assert driver.poll() is None, driver.stdout.read() if driver.stdout else ""
        return bool(list((killed / "index").glob("*.parquet")))

    wait_until(a_chunk_written, timeout=180, what="the driver to render a chunk")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert len(list((killed / "index").glob("*.parquet"))) < job.num_chunks  # it really stopped mid-run
    if name == "music-walk":
        (killed_dir / "audio" / "beat.flac").unlink()  # resume needs only the run's copy
        preview = assemble_job(RunStore(str(killed)), job, partial=True)
        assert any(p.endswith("preview/music-walk.mp4") for p in preview)
        check_soundtrack(killed / "preview" / "music-walk.mp4", 3, video_frames(killed / "preview" / "music-walk.mp4"))
    resumed = resume(str(killed), workers=CPU_WORKER, progress=quiet())
    assert resumed.complete and 0 < resumed.rendered < job.num_frames
    assert frame_bytes(killed) == frame_bytes(clean)
    assert index_rows(killed) == index_rows(clean)
    assert (killed / "timing.npy").exists() == (clean / "timing.npy").exists()
    if (clean / "timing.npy").exists():
        assert (killed / "timing.npy").read_bytes() == (clean / "timing.npy").read_bytes()
    if name == "music-walk":
        check_soundtrack(clean / "music-walk.mp4", 3, job.num_frames)
        check_soundtrack(killed / "music-walk.mp4", 3, job.num_frames)
    print(f"{name}: {job.num_frames} frames, clean + killed + resumed in {time.monotonic() - started:.1f} s")


def sigmoid_job(tmp_path: Path, pacing: str) -> Path:
    data = {
        "name": f"sigmoid-{pacing}",
        "prompts": ["a red fox", "a blue whale", "a green field"],
        "walk": {"kind": "interpolate", "frames": 33, "method": "lerp", "pacing": pacing},
        "noise": {"kind": "fixed", "seed": 3},
        "model": {"renderer": "doubles:SigmoidRenderer", "width": 128, "height": 128, "steps": 1, "batch_size": 4},
        "chunking": {"chunk_size": 8},
        "workers": {"cpus": 0.5, "gpus": 0},
        "outputs": {"gif": {"fps": 8}},
    }
    if pacing == "perceptual":
        data["pacing"] = {"samples": 9, "size": 64, "steps": 1}
    path = tmp_path / f"sigmoid-{pacing}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_perceptual_pacing_evens_out_a_walk_that_changes_unevenly(ray_connected, tmp_path):
    figures = {}
    for pacing in ("uniform", "perceptual"):
        out = tmp_path / pacing
        assert render_quietly(sigmoid_job(tmp_path, pacing), out).complete
        store = RunStore(str(out))
        d = store.read_smoothness(store.require_manifest().run_id)
        assert d is not None and len(d) == 32
        figures[pacing] = (smoothness(d), max_jump(d))
        print(f"{pacing}: smoothness 1 - Gini = {figures[pacing][0]:.3f}, max/mean jump {figures[pacing][1]:.2f}")
        assert f"smoothness 1 − Gini = {figures[pacing][0]:.2f}" in run_status(str(out))
        report = build_report(store)
        assert "distance from each frame to the next" in report
        assert ("walk parameter u against frame" in report) == (pacing == "perceptual")
    assert figures["uniform"][0] < 0.6
    assert figures["perceptual"][0] >= 0.9 and figures["perceptual"][1] <= 1.5


def test_a_soundtrack_changed_after_the_job_was_loaded_is_refused_before_anything_is_written(tmp_path):
    job = load_job(small_job(tmp_path, "music-walk"))
    audio = tmp_path / "audio" / "beat.flac"
    audio.write_bytes(audio.read_bytes() + b"\0")
    out = tmp_path / "out"
    with pytest.raises(AudioError) as refused:
        render(job, str(out), workers=CPU_WORKER, progress=quiet())
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    assert "changed since the job was loaded" in str(refused.value)
    assert not out.exists()


def test_the_timing_table_is_checked_by_its_hash(ray_connected, tmp_path):
    out = tmp_path / "out"
    job_path = small_job(tmp_path, "perceptual-walk")
    assert render_quietly(job_path, out).complete
    table = np.load(out / "timing.npy")
    assert table[0] == 0 and table[-1] == 1 and np.all(np.diff(table) > 0)
    (out / "timing.npy").write_bytes(b"damaged")
    (out / "frames" / "000005.png").unlink()
    before = frame_bytes(out)
    outcome = render_quietly(job_path, out)  # measured again (first pass kept), frame 5 rendered again
    assert outcome.complete and outcome.rendered == 1
    assert np.array_equal(np.load(out / "timing.npy"), table)
    assert set(frame_bytes(out)) == set(before) | {"000005.png"}


def test_a_fresh_start_clears_the_old_runs_table_soundtrack_first_pass_and_smoothness(tmp_path):
    job = load_job(small_job(tmp_path, "music-walk"))
    assert job.timing is not None and job.timing.sha256 is not None
    store = RunStore(str(tmp_path / "out"), create=True)
    manifest = new_manifest(job)
    store.start_fresh(manifest)
    with pytest.raises(BadInputError, match="not the .* the job recorded"):
        store.copy_in("soundtrack/beat.flac", tmp_path / "audio" / "beat.flac", "0" * 64, manifest.run_id)
    assert not store.exists("soundtrack/beat.flac")
    store.copy_in("soundtrack/beat.flac", tmp_path / "audio" / "beat.flac", job.timing.sha256, manifest.run_id)
    assert store.holds("soundtrack/beat.flac", job.timing.sha256)
    sha = store.write_timing(np.linspace(0, 2, job.num_frames))
    assert store.read_timing(sha) is not None and store.read_timing("0" * 64) is None
    store.write_pacing_frame(3, b"png")
    store.write_output(SMOOTHNESS, b"parquet", manifest.run_id)
    store.start_fresh(new_manifest(job))
    assert store.read_timing(sha) is None and not store.pacing_frames()
    assert not store.holds("soundtrack/beat.flac", job.timing.sha256) and not store.exists(SMOOTHNESS)
