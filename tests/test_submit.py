"""The smoke job through `ray job submit` on a local head: real KerasCV renderer, random weights."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from raywalk import load_job
from raywalk.run.store import RunStore

REPO = Path(__file__).resolve().parent.parent


def test_smoke_job_through_ray_job_submit(ray_head, tmp_path):
    out = tmp_path / "smoke-run"
    submit = subprocess.run(
        [
            "ray",
            "job",
            "submit",
            "--address",
            ray_head["dashboard"],
            "--working-dir",
            str(REPO),
            "--",
            "raywalk",
            "render",
            "jobs/smoke.yaml",
            "--out",
            str(out),
            "--workers",
            "1",
            "--cpus-per-worker",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in submit.stdout
    events = [json.loads(line) for line in submit.stdout.splitlines() if line.startswith('{"event"')]
    kinds = [e["event"] for e in events]
    assert kinds.count("chunk") == 2 and "assembled" in kinds
    assert any("RANDOM WEIGHTS" in e.get("message", "") for e in events)

    job = load_job(REPO / "jobs" / "smoke.yaml")
    store = RunStore(str(out))
    manifest = store.read_manifest()
    assert manifest.random_weights is True and manifest.fingerprint == job.fingerprint()
    assert {"keras", "keras-cv", "ray"} <= set(manifest.versions)
    index = store.read_index().to_pylist()
    assert sorted(r["frame"] for r in index) == list(range(job.num_frames))
    for row in index:
        image = Image.open(out / row["file"])
        assert image.size == (128, 128) and image.mode == "RGB"
        assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 100  # a decoded latent, not a blank
    for name in job.output_files().values():
        assert (out / name).stat().st_size > 0
    assert Image.open(out / "smoke.gif").n_frames == 2 * job.num_frames - 2  # rubber band
    # Every output of a random-weights run says so.
    assert b"RANDOM WEIGHTS" in Image.open(out / "smoke.gif").info["comment"]
    assert "RANDOM WEIGHTS" in Image.open(out / "smoke-contact.png").text["Comment"]
    assert b"RANDOM WEIGHTS" in (out / "smoke.mp4").read_bytes()
    assert store.missing_frames(job.num_frames) == []
