"""Renders the frames whose SHA-256s `test_kerascv.py::test_kerascv_jobs_keep_their_bytes` checks.

The digests in `data/kerascv_golden.json` were made by this script with the code of
commit d9e0d91 (before encodings became named parts), so the test proves that existing
KerasCV jobs still give the same bytes. Run it again only to re-derive them on purpose:
`KERAS_HOME=... python tests/kerascv_golden.py > tests/data/kerascv_golden.json`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from raywalk import Trajectory, job_from_dict
from raywalk.worker import encode_png

MODEL = {"width": 128, "height": 128, "steps": 2, "weights": "random", "precision": "float32", "batch_size": 1}
CASES: dict[str, tuple[dict[str, Any], list[int]]] = {
    "interpolate-slerp-fixed": (
        {
            "prompts": ["a red fox", "a blue whale"],
            "walk": {"kind": "interpolate", "frames": 4, "method": "slerp"},
            "noise": {"kind": "fixed", "seed": 3},
        },
        [0, 2],
    ),
    "grid-per-frame": (
        {
            "prompts": ["a cat", "a dog", "a cow", "a hen"],
            "walk": {"kind": "grid", "size": 2},
            "noise": {"kind": "per_frame", "seed": 5},
        },
        [3],
    ),
    "text-walk-random": (
        {
            "prompts": ["a lighthouse"],
            "walk": {"kind": "text_walk", "frames": 3, "step_size": 0.05, "direction": "random"},
        },
        [2],
    ),
    "noise-circle-tutorial": (
        {"prompts": ["a cow"], "walk": {"kind": "noise_circle", "frames": 4, "mode": "tutorial"}},
        [1],
    ),
}


def render_cases(renderer: Any) -> dict[str, list[str]]:
    """SHA-256 of each case's PNGs, rendered through the trajectory and the renderer as a worker does."""
    digests = {}
    for name, (data, frames) in CASES.items():
        job = job_from_dict({"name": name, **data, "model": MODEL})
        trajectory = Trajectory(job, renderer.encode_text(list(job.prompts)))
        digests[name] = []
        for frame in frames:
            encodings, noise = trajectory.frames(frame, frame + 1)
            image = renderer.render(encodings, noise)[0]
            digests[name].append(hashlib.sha256(encode_png(image)).hexdigest())
    return digests


if __name__ == "__main__":
    from raywalk.kerascv import KerasCVRenderer, build_models

    models = build_models("v1.4", 128, 128, "random")
    renderer = KerasCVRenderer.from_models(models, **MODEL, xla=False, joint_guidance=True)
    json.dump(render_cases(renderer), sys.stdout, indent=2)
    print()
