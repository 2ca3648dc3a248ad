"""`raywalk render` on a local Ray: chunks, workers, failures, resume, storage."""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import ray
from PIL import Image

from raywalk import Trajectory, job_from_dict, load_job
from raywalk.core.frameinfo import frame_text
from raywalk.errors import RunBusyError, RunLocationError
from raywalk.exec.driver import WorkerSpec, render, resume
from raywalk.exec.worker import encode_png
from raywalk.run.lock import RunLock
from raywalk.run.manifest import new_manifest
from raywalk.run.store import RunStore

from builders import (
    CPU_WORKER,
    cli,
    copy_run,
    cpu_worker_args,
    frame_bytes,
    frame_pixels,
    index_rows,
    quiet,
    render_then_sigkill,
    run,
    write_job,
)

PNG_BYTES = ("sha256", "bytes")  # of PNGs whose text names their job: jobs that differ only in options differ here


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, ray_connected):
    """A reference render: 12 frames, chunks of 4, one worker."""
    tmp = tmp_path_factory.mktemp("clean")
    out = tmp / "out"
    outcome, log = run(write_job(tmp), out)
    assert outcome.complete and outcome.rendered == 12
    return out, log


def test_full_render_writes_frames_index_and_manifest(clean_run):
    out, log = clean_run
    frames = frame_bytes(out)
    assert list(frames) == [f"{i:06d}.png" for i in range(12)]
    assert len(set(frames.values())) == 12  # per-frame noise: every frame differs
    index = RunStore(str(out)).read_index()
    assert sorted(index["frame"].to_pylist()) == list(range(12))
    assert {
        "sha256",
        "bytes",
        "width",
        "height",
        "chunk",
        "attempt",
        "node",
        "worker",
        "seconds",
        "segment",
        "t",
    } <= set(index.column_names)
    assert len(list((out / "index").glob("chunk-*.parquet"))) == 3
    assert ray.data.read_parquet(str(out / "index")).count() == 12  # the whole index in one call
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"] == load_job(next(out.parent.glob("*.yaml"))).fingerprint()
    assert {"raywalk", "ray", "numpy"} <= set(manifest["versions"])
    events = [json.loads(line) for line in log.splitlines()]
    chunks = [e for e in events if e["event"] == "chunk"]
    assert len(chunks) == 3 and chunks[-1]["done"] == 12 and "eta_seconds" in chunks[-1]


@pytest.mark.parametrize("chunk_size,workers", [(3, 1), (7, 3)])
def test_same_frames_whatever_the_chunking_and_worker_count(clean_run, tmp_path, chunk_size, workers):
    out = tmp_path / "out"
    spec = WorkerSpec(count=workers, gpus=1, cpus=0.25)  # fake GPUs: one actor each
    outcome, _ = run(write_job(tmp_path, chunk_size=chunk_size), out, workers=spec)
    assert outcome.complete
    assert frame_bytes(out) == frame_bytes(clean_run[0])
    rows = [{k: v for k, v in r.items() if k != "chunk"} for r in index_rows(out)]
    assert rows == [{k: v for k, v in r.items() if k != "chunk"} for r in index_rows(clean_run[0])]


def test_a_worker_killed_mid_chunk_loses_nothing(clean_run, tmp_path):
    out = tmp_path / "out"
    marker = tmp_path / "crashed"
    job = write_job(
        tmp_path,
        renderer="pipeline_doubles:CrashingRenderer",
        options={"crash_marker": str(marker), "crash_on_call": 3},
    )
    outcome, log = run(job, out)
    assert marker.exists(), "the worker never crashed"
    assert outcome.complete
    events = [json.loads(line) for line in log.splitlines()]
    assert any(e["event"] == "retry" for e in events)
    restarts = [e for e in events if e["event"] == "worker_restarting"]
    assert len(restarts) == 1 and restarts[0]["restart"] == 1 and restarts[0]["max_restarts"] == 3
    assert restarts[0]["reason"]
    assert frame_pixels(out) == frame_pixels(clean_run[0])
    assert index_rows(out, PNG_BYTES) == index_rows(clean_run[0], PNG_BYTES)


def test_a_worker_killed_while_it_encodes_the_prompts_is_asked_again(clean_run, tmp_path):
    """Found by bench/chaos.py: a worker that died under `encode_keyframes` ended the render as a bug (exit 70)."""
    out = tmp_path / "out"
    marker = tmp_path / "crashed"
    job = write_job(tmp_path, renderer="pipeline_doubles:CrashOnEncodeRenderer", options={"crash_marker": str(marker)})
    outcome, log = run(job, out)
    assert marker.exists(), "the worker never crashed"
    assert outcome.complete
    restarts = [e for e in map(json.loads, log.splitlines()) if e["event"] == "worker_restarting"]
    assert [e["restart"] for e in restarts] == [1]
    assert frame_pixels(out) == frame_pixels(clean_run[0])


def test_resume_renders_only_deleted_and_truncated_frames(clean_run, tmp_path):
    out = tmp_path / "out"
    copy_run(clean_run[0], out)
    (out / "frames" / "000003.png").unlink()
    truncated = out / "frames" / "000008.png"
    truncated.write_bytes(truncated.read_bytes()[:50])
    before = {p.name: p.stat().st_mtime_ns for p in (out / "frames").glob("*.png")}
    outcome = resume(str(out), workers=CPU_WORKER, progress=quiet())
    assert outcome.complete and outcome.rendered == 2
    after = {p.name: p.stat().st_mtime_ns for p in (out / "frames").glob("*.png")}
    touched = sorted(name for name in after if before.get(name) != after[name])
    assert touched == ["000003.png", "000008.png"]
    assert frame_bytes(out) == frame_bytes(clean_run[0])
    assert index_rows(out) == index_rows(clean_run[0])


def test_verify_finds_a_corrupted_frame_of_the_right_size(clean_run, tmp_path):
    out = tmp_path / "out"
    copy_run(clean_run[0], out)
    corrupted = out / "frames" / "000005.png"
    data = bytearray(corrupted.read_bytes())
    data[-20] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    assert resume(str(out), workers=CPU_WORKER, progress=quiet()).rendered == 0  # sizes match
    assert resume(str(out), workers=CPU_WORKER, progress=quiet(), verify=True).rendered == 1
    assert frame_bytes(out) == frame_bytes(clean_run[0])


def test_a_finished_run_resumes_without_starting_workers(clean_run):
    outcome = resume(str(clean_run[0]), workers=WorkerSpec(count=1, gpus=99), progress=quiet())
    assert outcome.complete and outcome.rendered == 0  # 99 GPUs could never be scheduled


def test_another_job_on_an_existing_output_is_refused(clean_run, tmp_path):
    other = write_job(tmp_path, name="other", frames=5)
    with pytest.raises(RunLocationError, match="holds a run of another job .'walk'.*--force"):
        run(other, clean_run[0])


def test_a_chunk_that_keeps_failing_is_marked_failed_and_the_rest_goes_on(ray_connected, tmp_path):
    out = tmp_path / "out"
    job = write_job(
        tmp_path,
        renderer="pipeline_doubles:BrokenRenderer",
        options={"fail_frames": [5]},
        walk={"kind": "text_walk", "frames": 12, "step_size": 1.0},
    )
    outcome, log = run(job, out)
    assert not outcome.complete
    assert outcome.missing == [4, 5, 6, 7]
    assert "renderer exploded on frames [5]" in outcome.failed_chunks[1]
    failures = RunStore(str(out)).read_failures()
    assert failures[1]["attempts"] == 3
    status = cli("status", out)
    assert "8 of 12 done, 4 missing (4-7)" in status.stdout
    assert "chunk 1: renderer exploded on frames [5] (frames 4-7, 3 attempts)" in status.stdout
    # Its outputs are not assembled silently; a partial preview is there for the asking.
    assembled = cli("assemble", out)
    assert assembled.returncode == 1 and "4-7" in assembled.stderr and "raywalk resume" in assembled.stderr
    assert not (out / "walk.gif").exists()
    preview = cli("assemble", out, "--partial")
    assert preview.returncode == 0 and "4-7" in preview.stdout
    assert Image.open(out / "preview" / "walk.gif").n_frames == 8 and not (out / "walk.gif").exists()


def test_a_second_render_on_a_run_in_progress_is_refused(clean_run):
    with RunLock(RunStore(str(clean_run[0])), {"job": "walk"}).held():  # this live process, as a driver would
        with pytest.raises(RunBusyError, match=f"in use by host .* pid {os.getpid()}"):
            resume(str(clean_run[0]), workers=CPU_WORKER, progress=quiet())


def test_driver_killed_with_sigkill_then_resumed(clean_run, ray_connected, tmp_path):
    out = tmp_path / "out"
    job = write_job(tmp_path, options={"seconds_per_frame": 0.4}, chunk_size=2)
    render_then_sigkill(job, out, ray_connected["address"])
    outcome = resume(str(out), workers=CPU_WORKER, progress=quiet())
    assert outcome.complete and 0 < outcome.rendered < 12
    assert frame_pixels(out) == frame_pixels(clean_run[0])
    assert [{k: v for k, v in r.items() if k != "chunk"} for r in index_rows(out, PNG_BYTES)] == [
        {k: v for k, v in r.items() if k != "chunk"} for r in index_rows(clean_run[0], PNG_BYTES)
    ]


def test_cli_render_never_imports_tensorflow_or_the_renderer_and_reports_missing_frames(ray_connected, tmp_path):
    """The renderer's module is checked and built only in Ray workers: its import leaves a trace
    (`import_sentinel`) that must not show in the driver, nor must TensorFlow."""
    out = tmp_path / "out"
    job = write_job(
        tmp_path,
        renderer="sentinel_doubles:SentinelRenderer",
        options={"fail_frames": [0]},
        walk={"kind": "text_walk", "frames": 6, "step_size": 1.0},
    )
    probe = (
        "import sys, runpy\nsys.argv = ['raywalk'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('raywalk.cli', run_name='__main__')\n"
        "finally:\n    print('TF-IMPORTED' if 'tensorflow' in sys.modules else 'TF-ABSENT', file=sys.stderr)\n"
        "    print('RENDERER-IMPORTED' if 'import_sentinel' in sys.modules else 'RENDERER-ABSENT',"
        " file=sys.stderr)\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "render",
            str(job),
            "--out",
            str(out),
            *cpu_worker_args(ray_connected["address"]),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "TF-ABSENT" in result.stderr and "RENDERER-ABSENT" in result.stderr
    assert f"frames missing (0-3); finish with: raywalk resume {out}" in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("chunk") == 1  # not a terminal: JSON lines


def test_render_to_s3(clean_run, s3_endpoint, tmp_path):
    uri = s3_endpoint.uri("runs/walk")
    job = load_job(write_job(tmp_path))
    outcome = render(job, uri, workers=CPU_WORKER, progress=quiet())
    assert outcome.complete
    store = RunStore(uri)
    assert {i: store.read_frame(i) for i in range(12)} == {
        i: b for i, b in enumerate(frame_bytes(clean_run[0]).values())
    }
    assert sorted(store.read_index()["frame"].to_pylist()) == list(range(12))
    assert resume(uri, workers=CPU_WORKER, progress=quiet()).rendered == 0


def test_previews_while_rendering_and_outputs_at_the_end(ray_connected, tmp_path):
    out = tmp_path / "out"
    job = write_job(
        tmp_path,
        outputs={"gif": {"fps": 5, "rubber_band": True}, "contact_sheet": {"every": 2}, "preview_every": 1},
        options={"seconds_per_frame": 0.1},
    )
    outcome, log = run(job, out)
    events = [json.loads(line) for line in log.splitlines()]
    assert any(e["event"] == "preview" for e in events)
    assert outcome.outputs and events[-1]["event"] == "assembled"
    assert Image.open(out / "walk.gif").n_frames == 2 * 12 - 2  # the final GIF, not a preview
    assert (out / "walk-contact.png").exists()


# ----------------------------------------------------------------------------- what a frame says


def test_each_frame_says_what_made_it_and_the_index_says_the_same(clean_run):
    out = clean_run[0]
    job = load_job(next(out.parent.glob("*.yaml")))
    image = Image.open(out / "frames" / "000005.png")
    text = image.text["parameters"]
    # frame 5 of 12 on a one-segment walk: t = 5/11
    assert text.splitlines()[0] == "a red fox :0.5455 AND a blue whale :0.4545"
    pairs = text.splitlines()[-1]
    for pair in (
        "Steps: 2",
        "CFG scale: 7.5",
        "Seed: 7",
        "Noise: per_frame",
        "Size: 64x64",
        'Model: "doubles:FakeRenderer"',
        "Weights: RANDOM WEIGHTS",
        "Walk: interpolate slerp segment 0 t 0.4545",
        "Job: walk",
        f"Fingerprint: {job.fingerprint()}",
        "Frame: 5",
        "Frames: 12",
        "Frame format: 2",
    ):
        assert pair in pairs.split(", "), pair
    record = json.loads(image.text["raywalk"])
    assert record["job"] == "walk" and record["frame"] == 5 and record["fingerprint"] == job.fingerprint()
    assert record["prompts"] == ["a red fox", "a blue whale"]
    assert record["weights"] == pytest.approx([6 / 11, 5 / 11])
    assert record["walk"]["at"] == {"segment": 0, "t": pytest.approx(5 / 11)}
    assert (record["seed"], record["steps"], record["guidance_scale"]) == (7, 2, 7.5)
    assert record["model"]["renderer"] == "doubles:FakeRenderer" and record["random_weights"] is True
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["frame_format"] == 2
    for volatile in (manifest["run_id"], platform.node()):  # only what the job and the frame number determine
        assert volatile not in text and volatile not in image.text["raywalk"]
    rows = RunStore(str(out)).read_index(["frame", "parameters"]).to_pylist()
    assert len(rows) == 12
    for row in rows:
        assert row["parameters"] == Image.open(out / "frames" / f"{row['frame']:06d}.png").text["parameters"]


def test_a_run_rendered_again_from_scratch_has_the_same_bytes_text_included(clean_run, tmp_path):
    out = tmp_path / "out"
    outcome, _ = run(write_job(tmp_path, chunk_size=5), out)  # another run, host time and chunking
    assert outcome.complete and outcome.rendered == 12
    run_ids = {json.loads((o / "manifest.json").read_text())["run_id"] for o in (out, clean_run[0])}
    assert len(run_ids) == 2
    assert frame_bytes(out) == frame_bytes(clean_run[0])
    assert all("parameters" in Image.open(p).text for p in (out / "frames").glob("*.png"))


def test_a_run_made_before_frame_texts_keeps_its_format_on_resume(clean_run, tmp_path):
    """A run whose manifest has no `frame_format` (format 1, as raywalk wrote before frame texts) is resumed
    with PNGs of pixels only, byte for byte what format 1 encodes, also after its manifest is repaired."""
    out = tmp_path / "out"
    job = load_job(write_job(tmp_path))
    old = new_manifest(job).to_json()
    del old["frame_format"]
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(old))  # a format-1 run stopped before its first frame
    outcome = resume(str(out), workers=CPU_WORKER, progress=quiet())
    assert outcome.complete and outcome.rendered == 12
    assert json.loads((out / "manifest.json").read_text())["frame_format"] == 1
    reference = frame_bytes(clean_run[0])
    first = frame_bytes(out)
    for name, png in first.items():
        pixels = np.asarray(Image.open(io.BytesIO(reference[name])))
        assert Image.open(io.BytesIO(png)).text == {}
        assert png == encode_png(pixels)  # format 1: the same pixels as format 2, and no text
    assert set(RunStore(str(out)).read_index(["parameters"])["parameters"].to_pylist()) == {None}

    (out / "frames" / "000004.png").unlink()
    assert resume(str(out), workers=CPU_WORKER, progress=quiet()).rendered == 1
    (out / "manifest.json").write_text("{")  # damaged: rendering the job again repairs it, format 1 kept
    (out / "frames" / "000009.png").unlink()
    outcome, _ = run(write_job(tmp_path), out)
    assert outcome.complete and outcome.rendered == 1
    assert json.loads((out / "manifest.json").read_text())["frame_format"] == 1
    assert frame_bytes(out) == first


def test_a_grid_frame_says_its_four_weights_its_negative_prompt_and_any_script():
    job = job_from_dict(
        {
            "name": "grid",
            "prompts": ["a cat", "a dog", "un chat 猫", "a hen"],
            "walk": {"kind": "grid", "size": 3},
            "noise": {"kind": "fixed", "seed": 9},
            "model": {"width": 64, "height": 64, "weights": "download", "options": {"negative_prompt": "blurry, dark"}},
        }
    )
    params = {k: v[0].item() for k, v in Trajectory(job, np.zeros((4, 77, 8))).params(4, 5).items()}
    text = frame_text(job, 4, params, random_weights=False)
    png = encode_png(np.zeros((8, 8, 3), np.uint8), text)
    assert Image.open(io.BytesIO(png)).text == text  # the CJK prompt travels as iTXt
    lines = text["parameters"].splitlines()
    assert lines[0] == "a cat :0.2500 AND a dog :0.2500 AND un chat 猫 :0.2500 AND a hen :0.2500"
    assert lines[1] == "Negative prompt: blurry, dark"
    assert "Weights: download" in lines[2] and "RANDOM" not in text["parameters"]
    assert 'Model: "raywalk.kerascv:KerasCVRenderer"' in lines[2].split(", ")
    assert json.loads(text["raywalk"])["walk"]["at"] == {"row": 1, "col": 1, "t_row": 0.5, "t_col": 0.5}
    assert frame_text(job, 4, params, random_weights=False) == text  # the same frame, the same text
