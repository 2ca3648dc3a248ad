"""What a frame says about how it was made: the text its PNG carries and its index row's `parameters`.

Frame format 2 (`FRAME_FORMAT`) embeds two PNG text chunks, as
AUTOMATIC1111 and ComfyUI embed theirs: `parameters`, human-readable text in
A1111's layout (the prompt mix, a negative prompt line, then one line of
`Key: value` pairs), and `raywalk`, the same facts as JSON. Both are a pure
function of the job and the frame's walk parameters (`Trajectory.params`),
themselves a function of the job and the frame number: no run id, host or
time, so a frame rendered again has the same bytes.

A frame of a job that starts from pictures also says, as A1111's img2img
does, its `Denoising strength` (the strength it starts at), and the SHA-256
of each picture it starts from (`pictures`); other jobs' frames are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from raywalk.core.job import Job
from raywalk.core.kinds import WalkKind

# How a run's PNGs are encoded: 1, pixels only (manifests without `frame_format`); 2, with the text chunks
# below. A run keeps its format for every resume.
FRAME_FORMAT = 2
FRAME_FORMATS = (1, 2)

TEXT_KEY = "parameters"  # A1111's key: the human-readable text
JSON_KEY = "raywalk"  # the same facts, machine-readable


def prompt_weights(job: Job, params: Mapping[str, Any]) -> list[float]:
    """How much of each prompt (in job order) a frame mixes, from its walk parameters; they sum to 1.

    An interpolate frame mixes prompts `segment` and the next (the first, after a loop's last) by `t`
    (along a slerp, `t` is the angle's share, not a linear weight); a grid frame its four corners
    bilinearly by `t_row`, `t_col`; a text walk or a noise circle shows its one prompt.
    """
    weights = [0.0] * len(job.prompts)
    kind = job.walk.kind
    if kind == WalkKind.INTERPOLATE:
        segment, t = int(params["segment"]), float(params["t"])
        weights[segment] += 1.0 - t
        weights[(segment + 1) % len(weights)] += t
    elif kind == WalkKind.GRID:
        r, c = float(params["t_row"]), float(params["t_col"])
        weights = [(1 - r) * (1 - c), (1 - r) * c, r * (1 - c), r * c]
    else:
        weights[0] = 1.0
    return weights


def frame_pictures(job: Job, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pictures a frame starts from (the init image, or its segment's keyframe pictures), as image and
    sha256; none for a frame between two text keyframes."""
    if job.walk.init_image is not None:
        used = [job.walk.init_image]
    elif job.pictures:
        segment = int(params["segment"])
        pair = [job.walk.keyframes[segment].image, job.walk.keyframes[segment + 1].image]
        used = list(dict.fromkeys(p for p in pair if p is not None))
    else:
        used = []
    return [{"image": p.image, "sha256": p.sha256} for p in used]


def frame_record(job: Job, frame: int, params: Mapping[str, Any], random_weights: bool) -> dict[str, Any]:
    """The facts that make frame `frame` of `job` (format 2's `raywalk` chunk), JSON-ready.

    `params`: the frame's walk parameters (one value each, as `Trajectory.params` gives them);
    `random_weights`: the renderer's (a function of the job's model section).
    """
    data = job.to_dict()
    return {
        "format": FRAME_FORMAT,
        "job": job.name,
        "fingerprint": job.fingerprint(),
        "frame": frame,
        "frames": job.num_frames,
        "prompts": list(job.prompts),
        "weights": prompt_weights(job, params),
        "walk": {**data["walk"], "at": {k: _plain(v) for k, v in sorted(params.items())}},
        "noise": data["noise"],
        "seed": job.noise.seed,
        "steps": job.model.steps,
        "guidance_scale": job.model.guidance_scale,
        "model": data["model"],
        "random_weights": random_weights,
    } | ({"pictures": frame_pictures(job, params), "strength": _plain(params["strength"])} if job.pictures else {})


def frame_text(job: Job, frame: int, params: Mapping[str, Any], random_weights: bool) -> dict[str, str]:
    """The PNG text chunks of a format-2 frame: {TEXT_KEY: A1111-style text, JSON_KEY: `frame_record` as JSON}."""
    record = frame_record(job, frame, params, random_weights)
    return {
        TEXT_KEY: parameters_text(record),
        JSON_KEY: json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
    }


def parameters_text(record: Mapping[str, Any]) -> str:
    """A `frame_record` as A1111 lays out its `parameters`: the prompt mix (`prompt :weight AND ...`), a
    `Negative prompt:` line when the job has one, and one line of comma-separated `Key: value` pairs."""
    model = record["model"]
    options = dict(model["options"])
    negative = options.pop("negative_prompt", "")
    mix = " AND ".join(f"{p} :{w:.4f}" for p, w in zip(record["prompts"], record["weights"]) if w > 0)
    walk = record["walk"]
    at = " ".join(f"{k} {_short(v)}" for k, v in walk["at"].items())
    noise = record["noise"]
    pairs = {
        "Steps": record["steps"],
        "CFG scale": record["guidance_scale"],
        "Seed": record["seed"],
        "Noise": " ".join([noise["kind"], *map(str, noise.get("seeds", []))]),
        "Size": f"{model['width']}x{model['height']}",
        "Model": " ".join([model["renderer"], *(f"{k}={v}" for k, v in sorted(options.items()))]),
        "Weights": "RANDOM WEIGHTS" if record["random_weights"] else model["weights"],
        "Precision": model["precision"],
        "Batch size": model["batch_size"],
        "Walk": " ".join([walk["kind"], *([walk["method"]] if "method" in walk else []), at]),
        "Job": record["job"],
        "Fingerprint": record["fingerprint"],
        "Frame": record["frame"],
        "Frames": record["frames"],
        "Frame format": record["format"],
    }
    if "pictures" in record:
        pairs["Denoising strength"] = round(float(record["strength"]), 4)
        pairs["Pictures"] = " ".join(p["sha256"] for p in record["pictures"]) or "none"
    lines = [mix]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {_value(v)}" for k, v in pairs.items()))
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds."""
    return value.item() if isinstance(value, np.generic) else value


def _short(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _value(value: Any) -> str:
    """A value as A1111 writes one: quoted (JSON) where a comma, colon or newline would break the line."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text
