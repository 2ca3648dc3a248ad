"""Renders the frames whose digests `test_kerascv.py::test_kerascv_jobs_keep_their_bytes` checks.

`data/kerascv_golden.json` holds, per case and frame, three SHA-256s: `pixels`
(the raw uint8 array the renderer returned), `png` (the PNG a worker writes
today: frame format 2, with the frame's text) and `png_format1` (the PNG of a
run made before frame texts, whose resumes keep that format), and under
`stack` the versions of the packages that decide those numbers (`stack()`).

How they were made: in the venv of the lock (`uv sync --locked --extra cpu
--extra test`: TensorFlow 2.21.0, Keras 3.15.1, KerasCV 0.9.0, numpy 2.4.6,
Pillow 13.0.0) on a 2-core x86-64 CPU with AVX-512 (`cpu`: "x86_64 avx512_bf16"), first with the code of ddc23f6 (before
frame texts; its PNGs equal the digests made with the code of d9e0d91, before
encodings became named parts), whose pixel and PNG digests became `pixels` and
`png_format1`; then with this script on the code that adds frame texts, which
gave the same pixels. Run it again only to re-derive them on purpose:
`KERAS_HOME=... python tests/kerascv_golden.py > tests/data/kerascv_golden.json`
(KERAS_HOME's datasets/ holding the CLIP vocabulary; about a minute).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np

from raywalk import Trajectory, job_from_dict
from raywalk.core.frameinfo import frame_text
from raywalk.exec.worker import encode_png

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
# The packages whose versions decide the digests: the model's numerics, the noise, the PNG encoder.
STACK_PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "keras-cv", "numpy", "pillow")
# The widest vector instructions the CPU offers, widest first: TensorFlow's CPU kernels (oneDNN, Eigen) pick
# their code by them, and the last bits of a frame can follow.
CPU_FEATURES = ("amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2", "avx", "sse4_2", "asimd")


def cpu() -> str:
    """The machine and the widest of CPU_FEATURES its CPU has (Linux's /proc/cpuinfo), e.g. "x86_64 avx512_bf16"."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = {f for line in info if line.startswith(("flags", "Features")) for f in line.split(":")[1].split()}
    except OSError:
        flags = set()
    widest = next((f for f in CPU_FEATURES if f in flags), "unknown")
    return f"{platform.machine()} {widest}"


def stack() -> dict[str, str]:
    """Installed versions of STACK_PACKAGES (absent ones left out), the zlib Pillow compresses with, and the
    CPU's kind (`cpu()`)."""
    from PIL import features

    found = {"cpu": cpu()}
    for name in STACK_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    found["zlib"] = str(features.version("zlib"))
    return found


def stack_difference(recorded: Mapping[str, str]) -> str:
    """Why digests may differ: the packages whose installed versions are not the `recorded` ones, or that
    the stack is the same (so the code, or the machine's CPU kernels, changed the numbers)."""
    installed = stack()
    changed = [
        f"{name} {installed.get(name, 'absent')} (digests made with {recorded.get(name, 'absent')})"
        for name in sorted(set(recorded) | set(installed))
        if installed.get(name) != recorded.get(name)
    ]
    if changed:
        return "the installed stack is not the one the golden digests were made with: " + ", ".join(changed)
    return (
        "the installed stack is the one the golden digests were made with "
        f"({', '.join(f'{k} {v}' for k, v in sorted(installed.items()))}), so the code changed the numbers"
    )


def digests(image: np.ndarray, text: Mapping[str, str]) -> dict[str, str]:
    """SHA-256s of a frame: its raw pixels, its PNG with `text` (frame format 2) and without (format 1)."""
    return {
        "pixels": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest(),
        "png": hashlib.sha256(encode_png(image, text)).hexdigest(),
        "png_format1": hashlib.sha256(encode_png(image)).hexdigest(),
    }


def render_cases(renderer: Any) -> tuple[dict[str, list[dict[str, Any]]], dict[str, bytes]]:
    """Each case's frames rendered through the trajectory and the renderer as a worker does: their digests
    ({case: [{frame, pixels, png, png_format1}]}) and their format-2 PNGs ({"case/frame": bytes})."""
    cases: dict[str, list[dict[str, Any]]] = {}
    pngs = {}
    for name, (data, frames) in CASES.items():
        job = job_from_dict({"name": name, **data, "model": MODEL})
        trajectory = Trajectory(job, renderer.encode_text(list(job.prompts)))
        cases[name] = []
        for frame in frames:
            encodings, noise = trajectory.frames(frame, frame + 1)
            image = renderer.render(encodings, noise)[0]
            params = {k: v[0].item() for k, v in trajectory.params(frame, frame + 1).items()}
            text = frame_text(job, frame, params, renderer.random_weights)
            cases[name].append({"frame": frame, **digests(image, text)})
            pngs[f"{name}/{frame}"] = encode_png(image, text)
    return cases, pngs


if __name__ == "__main__":
    from raywalk.renderers.kerascv.models import build_models
    from raywalk.renderers.kerascv.renderer import KerasCVRenderer

    models = build_models("v1.4", 128, 128, "random")
    renderer = KerasCVRenderer.from_models(models, **MODEL, xla=False, joint_guidance=True)
    json.dump({"stack": stack(), "cases": render_cases(renderer)[0]}, sys.stdout, indent=2)
    print()
