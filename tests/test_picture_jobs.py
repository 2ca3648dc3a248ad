"""The shipped picture jobs (jobs/sd3/photo-to-painting.yaml, jobs/image-to-image-walk.yaml,
jobs/style-lock.yaml), shrunk to tiny random models, rendered through Ray by their own renderers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from raywalk import load_job
from raywalk.core.job import Job
from raywalk.exec.driver import WorkerSpec, render
from raywalk.exec.progress import Progress
from raywalk.jobfile import job_from_dict
from raywalk.outputs.sheets import write_contact_sheet
from raywalk.run.store import RunStore, picture_name

JOBS = Path(__file__).resolve().parent.parent / "jobs"
FRAMES, SIZE, STEPS = 4, 64, 3


def shrunk(path: Path) -> Job:
    """The job at `path` with everything but its pictures, prompts and walk made tiny: 4 frames of 64x64 at 3
    steps, random weights (SD3: the tiny configuration), chunks of 2, and a contact sheet of every frame."""
    data: dict[str, Any] = load_job(path).to_dict()
    walk = data["walk"]
    walk["frames"] = FRAMES
    if "keyframes" in walk:
        walk["keyframes"][-1]["at"] = FRAMES - 1
    model = data["model"] | {"width": SIZE, "height": SIZE, "steps": STEPS, "weights": "random", "batch_size": 2}
    if model["renderer"].startswith("raywalk.kerashub"):
        model["options"] = {"config": "tiny"}
    data |= {
        "model": model,
        "chunking": {"chunk_size": 2, "max_attempts": 1},
        "workers": {"gpus": 0, "cpus": 1},
        "outputs": {"contact_sheet": {"every": 1, "columns": FRAMES}},
    }
    return job_from_dict(data, source=str(path))


@pytest.mark.parametrize(
    "name", ["sd3/photo-to-painting.yaml", "image-to-image-walk.yaml", "style-lock.yaml"], ids=lambda n: n
)
def test_a_shipped_picture_job_shrunk_renders_through_ray(name, ray_connected, tmp_path):
    job = shrunk(JOBS / name)
    out = tmp_path / "run"
    log = io.StringIO()
    outcome = render(job, str(out), workers=WorkerSpec(count=1, gpus=0, cpus=1), progress=Progress(4, 0, log))
    assert outcome.complete and outcome.rendered == FRAMES, log.getvalue()
    store = RunStore(str(out))
    manifest = store.require_manifest()
    assert manifest.random_weights
    for picture in job.pictures:  # copied in by content
        assert store.holds(picture_name(picture), picture.sha256)
    rows = sorted(store.read_index().to_pylist(), key=lambda r: r["frame"])
    first = job.walk.init_image or job.walk.keyframes[0].image
    assert first is not None and rows[0]["strength"] == first.strength
    assert rows[0]["start_step"] == int(STEPS * (1 - first.strength)) > 0  # the first frame starts late
    frames = [np.asarray(Image.open(out / "frames" / f"{i:06d}.png")) for i in range(FRAMES)]
    assert all(f.shape == (SIZE, SIZE, 3) for f in frames)
    plain = write_contact_sheet(store, FRAMES, "plain-contact.png", every=1, columns=FRAMES)  # no pictures
    sheet, without = Image.open(out / f"{job.name}-contact.png"), Image.open(plain)
    assert sheet.width == without.width and sheet.height > without.height  # the pictures' header on top
