"""Walks that start from pictures, rendered through Ray with the test renderer: frames, resume, copies."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from raywalk import load_job
from raywalk.core.pacing import first_pass_trajectory
from raywalk.core.picture import decode_picture, fit_picture
from raywalk.core.trajectory import Trajectory
from raywalk.errors import BAD_INPUT, PictureError, RendererError
from raywalk.exec.driver import WorkerSpec, render, resume
from raywalk.run.artifacts import split_pictures
from raywalk.run.store import RunStore, picture_name

from builders import (
    CPU_WORKER,
    frame_pixels,
    index_rows,
    quiet,
    render_then_sigkill,
    run,
    write_picture_job,
)
from doubles import FakeRenderer

TWO_WORKERS = WorkerSpec(count=2, gpus=0, cpus=0.5)
PNG_BYTES = ("sha256", "bytes")  # PNGs whose text names their job (its options) differ here
WALK = {"frames": 12, "images": ("images/a.png", None, "images/b.png"), "strengths": (0.3, 0.0, 0.6)}
SHEET = {"gif": {"fps": 5}, "contact_sheet": {"every": 1, "columns": 4, "tile": 32}}


@pytest.fixture(scope="module")
def picture_run(tmp_path_factory, ray_connected):
    """A walk from picture a through a prompt to picture b: 12 frames, chunks of 4, two workers."""
    tmp = tmp_path_factory.mktemp("pictures")
    outcome, _ = run(write_picture_job(tmp, **WALK, outputs=SHEET), tmp / "out", workers=TWO_WORKERS)
    assert outcome.complete and outcome.rendered == 12
    return tmp / "out"


def test_the_report_and_the_contact_sheet_show_the_pictures(picture_run):
    job = RunStore(str(picture_run)).read_job()
    report = (picture_run / "report.html").read_text()
    assert "<h2>Pictures</h2>" in report
    for k, picture in zip((0, 2), job.pictures):
        assert f"keyframe {k} · <code>{picture_name(picture)}</code>" in report
        assert f"strength {picture.strength:g} · sha256" in report
    assert report.count('src="data:image/png;base64,') >= 2  # the thumbnails, embedded
    sheet = np.asarray(Image.open(picture_run / "pictures-contact.png"))
    assert sheet.shape[0] > 3 * 32  # 12 frames in 3 rows of 4, under a header of the two pictures


def test_a_picture_walk_renders_its_frames_from_its_pictures(picture_run):
    store = RunStore(str(picture_run))
    job = store.read_job()
    a, b = job.pictures
    for picture in (a, b):  # the copies, by content
        assert store.holds(picture_name(picture), picture.sha256)
    texts, pictures = split_pictures(store.read_keyframes(store.require_manifest().keyframes_sha256))
    renderer = FakeRenderer(width=64, height=64, steps=4)
    assert pictures is not None and pictures.shape == (2, 8, 8, 4)
    trajectory = Trajectory(job, texts, pictures=pictures, latent_shape=renderer.latent_shape)
    encodings, noise = trajectory.frames(0, 12)
    starts = trajectory.starts(0, 12)
    text_only = renderer.render(encodings, noise)
    pictured = renderer.render(encodings, noise, start_latents=starts.latents, start_steps=starts.steps)
    stored = np.stack([np.asarray(Image.open(picture_run / "frames" / f"{i:06d}.png")) for i in range(12)])
    assert np.array_equal(stored, pictured)  # every frame, the intermediate ones too, rendered from its starts
    differs = [not np.array_equal(stored[i], text_only[i]) for i in range(12)]
    assert differs[0] and differs[11] and not differs[5]  # the keyframes start from pictures; frame 5 is text alone
    rows = sorted(store.read_index().to_pylist(), key=lambda r: r["frame"])
    assert [r["start_step"] for r in rows] == starts.steps.tolist() and rows[0]["strength"] == 0.3
    assert "Denoising strength: 0.3" in Image.open(picture_run / "frames" / "000000.png").text["parameters"]


def test_resume_after_a_driver_sigkill_is_byte_identical_without_the_originals(picture_run, ray_connected, tmp_path):
    out = tmp_path / "out"
    job_file = write_picture_job(tmp_path, chunk_size=2, options={"seconds_per_frame": 0.4}, **WALK)
    render_then_sigkill(job_file, out, ray_connected["address"], timeout=180)
    for original in (tmp_path / "images").iterdir():  # the run's copies are enough
        original.unlink()
    outcome = resume(str(out), workers=CPU_WORKER, progress=quiet())
    assert outcome.complete and 0 < outcome.rendered < 12
    assert frame_pixels(out) == frame_pixels(picture_run)
    strip = ("chunk",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in index_rows(out, PNG_BYTES)] == [
        {k: v for k, v in r.items() if k not in strip} for r in index_rows(picture_run, PNG_BYTES)
    ]
    # The same job rendered afresh elsewhere needs its originals: refused in one line, nothing written.
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(PictureError, match="cannot read the picture, and the run holds no copy") as refused:
        render(RunStore(str(out)).read_job(), str(elsewhere), workers=CPU_WORKER, progress=quiet())
    assert refused.value.exit_code == BAD_INPUT and "\n" not in str(refused.value)
    assert not elsewhere.exists()


def test_an_init_image_walk_renders(ray_connected, tmp_path):
    init = {"image": "images/b.png", "strength": 0.5, "fit": "pad"}
    job_file = write_picture_job(tmp_path, walk={"kind": "text_walk", "frames": 5, "step_size": 0.5}, init_image=init)
    outcome, _ = run(job_file, tmp_path / "out")
    assert outcome.complete and outcome.rendered == 5
    rows = RunStore(str(tmp_path / "out")).read_index().to_pylist()
    assert {r["start_step"] for r in rows} == {2} and {r["strength"] for r in rows} == {0.5}


def test_a_picture_changed_after_loading_is_refused_and_the_new_location_removed(ray_connected, tmp_path):
    job = load_job(write_picture_job(tmp_path, **WALK))
    (tmp_path / "images" / "b.png").write_bytes((tmp_path / "images" / "a.png").read_bytes())
    out = tmp_path / "out"
    with pytest.raises(PictureError, match="changed since the job was loaded") as refused:
        render(job, str(out), workers=CPU_WORKER, progress=quiet())
    assert refused.value.exit_code == BAD_INPUT and "\n" not in str(refused.value)
    assert not out.exists()


def test_a_renderer_without_encode_images_is_refused_before_anything_is_written(ray_connected, tmp_path):
    job = load_job(write_picture_job(tmp_path, renderer="doubles:TextOnlyRenderer", **WALK))
    out = tmp_path / "out"
    with pytest.raises(RendererError, match="cannot start from pictures") as refused:
        render(job, str(out), workers=CPU_WORKER, progress=quiet())
    assert refused.value.exit_code == BAD_INPUT and "\n" not in str(refused.value)
    assert not out.exists()


def test_a_perceptually_paced_picture_walk_encodes_its_pictures_for_the_first_pass(ray_connected, tmp_path):
    job_file = write_picture_job(tmp_path, noise={"kind": "fixed", "seed": 3}, **WALK)
    data = yaml.safe_load(job_file.read_text())
    data["walk"]["pacing"] = "perceptual"
    data["pacing"] = {"samples": 3, "size": 64, "steps": 2}
    job_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    outcome, _ = run(job_file, out)
    assert outcome.complete and outcome.rendered == 12
    first = [np.asarray(Image.open(out / "pacing" / f"{i:06d}.png")) for i in range(5)]
    renderer = FakeRenderer(width=64, height=64, steps=2)
    job = load_job(job_file)
    texts, _ = split_pictures(RunStore(str(out)).read_keyframes())
    fitted = [
        fit_picture(decode_picture((tmp_path / p.image).read_bytes(), p.image), 64, 64, p.fit) for p in job.pictures
    ]
    trajectory = first_pass_trajectory(job, texts, 4, renderer.encode_images(np.stack(fitted)))
    encodings, noise = trajectory.frames(0, 5)
    starts = trajectory.starts(0, 5)
    expected = renderer.render(encodings, noise, start_latents=starts.latents, start_steps=starts.steps)
    assert all(np.array_equal(f, e) for f, e in zip(first, expected))  # the first pass starts from the pictures too
