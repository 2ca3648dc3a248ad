"""Job files: YAML in, a validated, immutable `Job` out.

A job says *what* to render: the prompts, the walk through text-encoding
space, the diffusion noise, the model, how frames are chunked and which
outputs are assembled. Validation is strict and happens before anything runs,
so that a typo fails in a second instead of after a night of rendering. Every
error is one line naming the file, the field and the reason.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from raywalk.errors import JobError

DEFAULT_RENDERER = "raywalk.kerascv:KerasCVRenderer"
WALK_KINDS = ("interpolate", "grid", "text_walk", "noise_circle")
NOISE_KINDS = ("fixed", "per_frame", "slerp", "circle")
METHODS = ("lerp", "slerp")
EASINGS = ("linear", "ease_in_out", "cosine")
DIRECTIONS = ("ones", "random")
CIRCLE_MODES = ("seamless", "tutorial")
PRECISIONS = ("auto", "float32", "mixed_float16")
WALK_KEYS = {  # the fields of `Walk` that each kind reads
    "interpolate": ("kind", "frames", "method", "easing", "loop"),
    "grid": ("kind", "size", "method", "easing"),
    "text_walk": ("kind", "frames", "step_size", "direction", "direction_seed"),
    "noise_circle": ("kind", "frames", "mode"),
}
MAX_WORKERS = 1024  # renderer actors per run
MAX_RESTARTS = 100  # restarts of one renderer actor (its process or node died) before it counts as lost
OUTPUT_KINDS = ("gif", "mp4", "grid", "contact_sheet")
OUTPUT_SUFFIXES = {"gif": ".gif", "mp4": ".mp4", "grid": "-grid.png", "contact_sheet": "-contact.png"}


@dataclass(frozen=True)
class Walk:
    """The path through text-encoding space (and, for `noise_circle`, noise space)."""

    kind: str = "interpolate"
    frames: int = 0  # grid walks derive theirs from `size`
    method: str = "lerp"
    easing: str = "linear"
    loop: bool = False
    size: int = 0
    step_size: float = 0.005
    direction: str = "ones"
    direction_seed: int = 0
    mode: str = "seamless"


@dataclass(frozen=True)
class Noise:
    """The diffusion noise of each frame; every draw is keyed by seed and frame or stream."""

    kind: str = "fixed"
    seed: int = 12345
    seeds: tuple[int, ...] = ()  # slerp: one per keyframe prompt (default seed, seed+1, ...)


@dataclass(frozen=True)
class Model:
    """The renderer (by import path) and the options it is built with."""

    renderer: str = DEFAULT_RENDERER
    width: int = 512
    height: int = 512
    steps: int = 50
    guidance_scale: float = 7.5
    weights: str = "download"
    precision: str = "auto"
    batch_size: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunking:
    """How frames are split into units of work, and how hard each unit is tried."""

    chunk_size: int = 16
    max_attempts: int = 3
    in_flight: int = 2  # chunks queued per worker, so the next one waits while one renders


@dataclass(frozen=True)
class Workers:
    """Ray resources: how many renderer actors, and what each reserves."""

    count: int = 0  # 0: one per GPU in the cluster (or one, without GPUs); at most MAX_WORKERS
    gpus: float = 1.0
    cpus: float = 1.0
    max_restarts: int = 3  # restarts of each actor; a renderer that keeps dying ends the run, never a hang


@dataclass(frozen=True)
class Outputs:
    """Assembled outputs: kind -> options (see `raywalk.assemble`)."""

    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    preview_every: int = 0  # rebuild a partial preview every N finished chunks


@dataclass(frozen=True)
class Job:
    """A validated job. Pure data: no model, no Ray, no I/O."""

    name: str
    prompts: tuple[str, ...]
    walk: Walk
    noise: Noise
    model: Model
    chunking: Chunking = Chunking()
    workers: Workers = Workers()
    outputs: Outputs = Outputs()
    source: str = field(default="<dict>", compare=False)

    @property
    def num_frames(self) -> int:
        return self.walk.size**2 if self.walk.kind == "grid" else self.walk.frames

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.model.height // 8, self.model.width // 8, 4)

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_frames / self.chunking.chunk_size)

    def chunk_frames(self, chunk: int) -> range:
        """Frames of chunk `chunk`: consecutive, `chunk_size` of them (the last may be short)."""
        size = self.chunking.chunk_size
        return range(chunk * size, min((chunk + 1) * size, self.num_frames))

    def output_files(self) -> dict[str, str]:
        """Output kind -> file name in the run directory, for the outputs the job asks for."""
        return {kind: f"{self.name}{OUTPUT_SUFFIXES[kind]}" for kind in self.outputs.files}

    def trajectory(self, keyframes: np.ndarray):
        """The frame-by-frame walk, given one encoding per prompt (K, 77, D) in job order."""
        from raywalk.trajectory import Trajectory

        return Trajectory(self, keyframes)

    def to_dict(self) -> dict[str, Any]:
        """The job as plain data, loadable again by `job_from_dict`."""
        data = dataclasses.asdict(self)
        data.pop("source")
        data["prompts"] = list(self.prompts)
        data["walk"] = {k: v for k, v in data["walk"].items() if k in WALK_KEYS[self.walk.kind]}
        if self.noise.kind == "slerp":
            data["noise"]["seeds"] = list(self.noise.seeds)
        else:
            del data["noise"]["seeds"]
        data["model"]["options"] = dict(self.model.options)
        data["outputs"] = {
            "preview_every": self.outputs.preview_every,
            **{k: dict(v) for k, v in self.outputs.files.items()},
        }
        return data

    def fingerprint(self) -> str:
        """SHA-256 of what determines the frames; the same job always has the same one."""
        data = self.to_dict()
        for volatile in ("chunking", "workers", "outputs"):
            data.pop(volatile)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------
# Loading and validation


def load_job(path: str | Path) -> Job:
    """Read and validate a YAML job file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"{source}: cannot read job file: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise JobError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return job_from_dict(data, source=source, default_name=Path(path).stem)


def job_from_dict(data: Any, source: str = "<dict>", default_name: str = "walk") -> Job:
    """Validate plain data (a parsed job file or a run manifest's job) into a `Job`."""
    return _Validator(source).job(data, default_name)


class _Validator:
    """Turns plain data into dataclasses, raising `JobError` at the first problem."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, reason: str) -> None:
        raise JobError(f"{self.source}: {where}: {reason}")

    def section(self, data: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(where, f"must be a mapping, got {_type(data)}")
        for key in data:
            if key not in allowed:
                self.fail(f"{where}.{key}" if where else str(key),
                          f"unknown key (expected one of: {', '.join(allowed)})")
        return data

    def integer(self, data: dict, key: str, where: str, default: int, minimum: int | None = None) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{where}.{key}", f"must be an integer, got {_type(value)}")
        if minimum is not None and value < minimum:
            self.fail(f"{where}.{key}", f"must be >= {minimum}, got {value}")
        return value

    def number(self, data: dict, key: str, where: str, default: float,
               minimum: float | None = None, exclusive: bool = False) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(f"{where}.{key}", f"must be a number, got {_type(value)}")
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            self.fail(f"{where}.{key}", f"must be {'>' if exclusive else '>='} {minimum}, got {value}")
        return float(value)

    def boolean(self, data: dict, key: str, where: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", f"must be true or false, got {_type(value)}")
        return value

    def string(self, data: dict, key: str, where: str, default: str) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{where}.{key}", f"must be a non-empty string, got {_type(value)}")
        return value

    def choice(self, data: dict, key: str, where: str, default: str, choices: tuple[str, ...]) -> str:
        value = data.get(key, default)
        if value not in choices:
            self.fail(f"{where}.{key}", f"unknown {key} {value!r} (expected one of: {', '.join(choices)})")
        return value

    # -- sections -----------------------------------------------------------

    def job(self, data: Any, default_name: str) -> Job:
        if data is None:
            self.fail("job", "file is empty")
        top = self.section(data, "", ("name", "prompts", "walk", "noise", "model",
                                      "chunking", "workers", "outputs"))
        name = self.string(top, "name", "job", default_name)
        if any(c in name for c in "/\\") or name.startswith("."):
            self.fail("name", f"must be a plain file name, got {name!r}")
        prompts = self.prompts(top.get("prompts"))
        walk = self.walk(top.get("walk"), prompts)
        noise = self.noise(top.get("noise"), walk, prompts)
        return Job(
            name=name,
            prompts=prompts,
            walk=walk,
            noise=noise,
            model=self.model(top.get("model")),
            chunking=self.chunking(top.get("chunking")),
            workers=self.workers(top.get("workers")),
            outputs=self.outputs(top.get("outputs"), walk),
            source=self.source,
        )

    def prompts(self, data: Any) -> tuple[str, ...]:
        if data is None:
            self.fail("prompts", "missing: a job needs at least one prompt")
        if isinstance(data, str):
            data = [data]
        if not isinstance(data, list) or not data:
            self.fail("prompts", f"must be a non-empty list of strings, got {_type(data)}")
        for i, prompt in enumerate(data):
            if not isinstance(prompt, str):
                self.fail(f"prompts[{i}]", f"must be a string, got {_type(prompt)}")
            if not prompt.strip():
                self.fail(f"prompts[{i}]", "is empty")
        return tuple(data)

    def walk(self, data: Any, prompts: tuple[str, ...]) -> Walk:
        w = self.section(data, "walk", tuple(f.name for f in dataclasses.fields(Walk)))
        kind = self.choice(w, "kind", "walk", "interpolate", WALK_KINDS)
        wanted = {"interpolate": "at least 2", "grid": "exactly 4", "text_walk": "exactly 1",
                  "noise_circle": "exactly 1"}[kind]
        count_ok = {"interpolate": len(prompts) >= 2, "grid": len(prompts) == 4}.get(kind, len(prompts) == 1)
        if not count_ok:
            self.fail("prompts", f"a {kind} walk needs {wanted} prompts, got {len(prompts)}")
        relevant = WALK_KEYS[kind]
        for key in w:
            if key not in relevant:
                self.fail(f"walk.{key}", f"does not apply to a {kind} walk "
                          f"(its keys: {', '.join(sorted(relevant))})")
        if kind == "grid":
            size, frames = self.integer(w, "size", "walk", 0, minimum=1), 0
            if "size" not in w:
                self.fail("walk.size", "missing: a grid walk needs its side length n (n x n frames)")
        else:
            size = 0
            if "frames" not in w:
                self.fail("walk.frames", f"missing: a {kind} walk needs a frame count")
            frames = self.integer(w, "frames", "walk", 0, minimum=1)
        return Walk(
            kind=kind,
            frames=frames,
            size=size,
            method=self.choice(w, "method", "walk", "lerp", METHODS),
            easing=self.choice(w, "easing", "walk", "linear", EASINGS),
            loop=self.boolean(w, "loop", "walk", False),
            step_size=self.number(w, "step_size", "walk", 0.005),
            direction=self.choice(w, "direction", "walk", "ones", DIRECTIONS),
            direction_seed=self.integer(w, "direction_seed", "walk", 0, minimum=0),
            mode=self.choice(w, "mode", "walk", "seamless", CIRCLE_MODES),
        )

    def noise(self, data: Any, walk: Walk, prompts: tuple[str, ...]) -> Noise:
        n = self.section(data, "noise", ("kind", "seed", "seeds"))
        default_kind = "circle" if walk.kind == "noise_circle" else "fixed"
        kind = self.choice(n, "kind", "noise", default_kind, NOISE_KINDS)
        if (kind == "circle") != (walk.kind == "noise_circle"):
            self.fail("noise.kind", "circle noise is the noise_circle walk's own, and that walk takes no other"
                      if kind == "circle" else f"a noise_circle walk draws circle noise, not {kind!r}")
        if kind == "slerp" and walk.kind not in ("interpolate", "grid"):
            self.fail("noise.kind", f"slerp noise follows an interpolation between prompts; "
                      f"a {walk.kind} walk has one prompt")
        seed = self.integer(n, "seed", "noise", 12345, minimum=0)
        seeds: tuple[int, ...] = ()
        if "seeds" in n:
            if kind != "slerp":
                self.fail("noise.seeds", "only slerp noise takes one seed per prompt")
            raw = n["seeds"]
            if not isinstance(raw, list) or len(raw) != len(prompts):
                self.fail("noise.seeds", f"must be a list of {len(prompts)} integers, one per prompt")
            seeds = tuple(self.integer({"seeds": s}, "seeds", "noise", 0, minimum=0) for s in raw)
        elif kind == "slerp":
            seeds = tuple(seed + k for k in range(len(prompts)))
        return Noise(kind=kind, seed=seed, seeds=seeds)

    def model(self, data: Any) -> Model:
        m = self.section(data, "model", tuple(f.name for f in dataclasses.fields(Model)))
        renderer = self.string(m, "renderer", "model", DEFAULT_RENDERER)
        module, _, cls = renderer.partition(":")
        if not module or not cls or not all(p.isidentifier() for p in module.split(".") + cls.split(".")):
            self.fail("model.renderer", f"must be an import path 'package.module:Class', got {renderer!r}")
        sides = {}
        for side in ("width", "height"):
            value = self.integer(m, side, "model", 512, minimum=64)
            if value % 64:
                self.fail(f"model.{side}", f"must be a multiple of 64 (the UNet halves the "
                          f"{value // 8}-pixel latent three times), got {value}")
            sides[side] = value
        options = m.get("options", {})
        if options is None:
            options = {}
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            self.fail("model.options", f"must be a mapping of option names to values, got {_type(options)}")
        return Model(
            renderer=renderer,
            steps=self.integer(m, "steps", "model", 50, minimum=1),
            guidance_scale=self.number(m, "guidance_scale", "model", 7.5, minimum=0),
            weights=self.string(m, "weights", "model", "download"),
            precision=self.choice(m, "precision", "model", "auto", PRECISIONS),
            batch_size=self.integer(m, "batch_size", "model", 1, minimum=1),
            options=dict(options),
            **sides,
        )

    def chunking(self, data: Any) -> Chunking:
        c = self.section(data, "chunking", ("chunk_size", "max_attempts", "in_flight"))
        return Chunking(
            chunk_size=self.integer(c, "chunk_size", "chunking", 16, minimum=1),
            max_attempts=self.integer(c, "max_attempts", "chunking", 3, minimum=1),
            in_flight=self.integer(c, "in_flight", "chunking", 2, minimum=1),
        )

    def workers(self, data: Any) -> Workers:
        w = self.section(data, "workers", ("count", "gpus", "cpus", "max_restarts"))
        count = self.integer(w, "count", "workers", 0, minimum=0)
        if count > MAX_WORKERS:
            self.fail("workers.count", f"must be <= {MAX_WORKERS}, got {count}")
        restarts = self.integer(w, "max_restarts", "workers", 3, minimum=0)
        if restarts > MAX_RESTARTS:
            self.fail("workers.max_restarts", f"must be <= {MAX_RESTARTS}, got {restarts}")
        return Workers(
            count=count,
            gpus=self.number(w, "gpus", "workers", 1.0, minimum=0),
            cpus=self.number(w, "cpus", "workers", 1.0, minimum=0),
            max_restarts=restarts,
        )

    def outputs(self, data: Any, walk: Walk) -> Outputs:
        o = self.section(data, "outputs", OUTPUT_KINDS + ("preview_every",))
        option_keys = {
            "gif": {"fps": 10, "rubber_band": False, "resize": None},
            "mp4": {"fps": 24, "rubber_band": False, "quality": 8},
            "grid": {},
            "contact_sheet": {"every": 10, "columns": 8, "tile": 128},
        }
        files: dict[str, dict[str, Any]] = {}
        for kind in OUTPUT_KINDS:
            if kind not in o:
                continue
            if kind == "grid" and walk.kind != "grid":
                self.fail("outputs.grid", f"a grid image needs a grid walk, not {walk.kind}")
            opts = self.section(o[kind], f"outputs.{kind}", tuple(option_keys[kind]))
            merged = {**option_keys[kind], **opts}
            where = f"outputs.{kind}"
            for key in ("fps", "every", "columns", "tile"):
                if key in merged:
                    merged[key] = self.integer(merged, key, where, 0, minimum=1)
            if "rubber_band" in merged:
                merged["rubber_band"] = self.boolean(merged, "rubber_band", where, False)
            if "quality" in merged:
                merged["quality"] = self.number(merged, "quality", where, 8, minimum=0)
                if merged["quality"] > 10:
                    self.fail(f"{where}.quality", f"must be between 0 and 10, got {merged['quality']}")
            if merged.get("resize") is not None:
                size = merged["resize"]
                if (not isinstance(size, list) or len(size) != 2
                        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
                    self.fail(f"{where}.resize", f"must be [width, height] in pixels, got {size!r}")
                merged["resize"] = list(size)
            files[kind] = merged
        return Outputs(files=files, preview_every=self.integer(o, "preview_every", "outputs", 0, minimum=0))


def _type(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:60]
