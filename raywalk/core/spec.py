"""Job files: YAML in, a validated, immutable `Job` out.

A job says *what* to render: the prompts, the walk through text-encoding
space, the diffusion noise, the model, how frames are chunked and which
outputs are assembled. Validation is strict and happens before anything runs,
so that a typo fails in a second instead of after a night of rendering. Every
error is one line naming the file, the field and the reason.

Job files are read defensively, since one may come from anyone: only regular
files of at most `MAX_JOB_BYTES`, YAML whose nesting and alias expansion are
bounded (checked on the event stream, before any object is built; merged
mappings count as the aliases they are), no duplicate keys (anchors, aliases
and merge keys are YAML's), and every number within a documented maximum (`LIMITS`).
A job is still trusted code: its renderer is an import path that runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from raywalk.errors import AudioError, JobError

__all__ = ["Job", "JobError", "Keyframe", "Pacing", "Timing", "job_from_dict", "load_job"]

DEFAULT_RENDERER = "raywalk.kerascv:KerasCVRenderer"
WALK_KINDS = ("interpolate", "grid", "text_walk", "noise_circle")
NOISE_KINDS = ("fixed", "per_frame", "slerp", "circle")
METHODS = ("lerp", "slerp")
EASINGS = ("linear", "ease_in_out", "cosine")
DIRECTIONS = ("ones", "random")
PACINGS = ("uniform", "perceptual")
CIRCLE_MODES = ("seamless", "tutorial")
PRECISIONS = ("auto", "float32", "mixed_float16", "float16", "bfloat16", "mixed_bfloat16")
# Maxima, so that a hostile or mistyped job fails in one line instead of exhausting memory.
MAX_JOB_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000
MAX_NAME = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_PROMPTS = 256
MAX_PROMPT_CHARS = 2_000
MAX_FRAMES = 1_000_000
MAX_GRID = 1_000  # a 1000 x 1000 grid is MAX_FRAMES
MAX_SEED = 2**63 - 1
MAX_SIDE = 4_096
MAX_STEPS = 1_000
MAX_BATCH = 256
MAX_GUIDANCE = 100.0
MAX_STEP_SIZE = 1e6
MAX_CHUNK = 100_000
MAX_ATTEMPTS = 100
MAX_IN_FLIGHT = 64
MAX_FPS = 240
MAX_OUTPUT_SIDE = 8_192
MAX_TILE = 1_024
MAX_COLUMNS = 256
MAX_SHEET_PIXELS = 200_000_000  # a contact sheet of at most ~600 MB of RGB
MAX_SMOOTHING = 60.0  # seconds of release after a beat
MAX_PACING_SAMPLES = 1_000  # first-pass images per segment
WALK_KEYS = {  # the fields of `Walk` that each kind reads
    "interpolate": ("kind", "frames", "method", "easing", "loop", "keyframes", "pacing"),
    "grid": ("kind", "size", "method", "easing"),
    "text_walk": ("kind", "frames", "step_size", "direction", "direction_seed"),
    "noise_circle": ("kind", "frames", "mode"),
}
ARTICLES = {kind: ("an" if kind[0] in "aeiou" else "a") for kind in WALK_KINDS}
MAX_WORKERS = 1024  # renderer actors per run
MAX_RESTARTS = 100  # restarts of one renderer actor (its process or node died) before it counts as lost
OUTPUT_KINDS = ("gif", "mp4", "grid", "contact_sheet")
OUTPUT_SUFFIXES = {"gif": ".gif", "mp4": ".mp4", "grid": "-grid.png", "contact_sheet": "-contact.png"}


@dataclass(frozen=True)
class Keyframe:
    """Where an interpolate walk reaches one prompt, and how the segment after it moves."""

    frame: int
    seconds: float | None = None  # as written: `frame` is round(seconds x timing.fps)
    easing: str = "linear"  # of the segment that follows (the last keyframe's is unused)

    def to_dict(self, last: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"at": self.frame} if self.seconds is None else {"seconds": self.seconds}
        return data if last else {**data, "easing": self.easing}


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
    keyframes: tuple[Keyframe, ...] = ()  # interpolate: one per prompt, at increasing frames, the last the last frame
    pacing: str = "uniform"  # interpolate: uniform | perceptual (see `raywalk.core.pacing`)


@dataclass(frozen=True)
class Noise:
    """The diffusion noise of each frame; every draw is keyed by seed and frame or stream."""

    kind: str = "fixed"
    seed: int = 12345
    seeds: tuple[int, ...] = ()  # slerp: one per keyframe prompt (default seed, seed+1, ...)


@dataclass(frozen=True)
class Timing:
    """Walk time: frames per second, and optionally a soundtrack whose beats drive the walk."""

    fps: int
    audio: str | None = None  # as written in the job, relative to the job file's folder
    smoothing: float = 0.1  # seconds: release of the motion after each beat
    floor: float = 0.2  # the slowest step, as a share of the mean step
    duration: float | None = None  # seconds of the soundtrack the walk lasts (read from the file)
    sha256: str | None = None  # of the soundtrack file: the frames follow its content

    def frame(self, seconds: float) -> int:
        """The frame showing at `seconds`: frame k shows at k / fps, so round(seconds x fps), halves up."""
        return math.floor(seconds * self.fps + 0.5)


@dataclass(frozen=True)
class Pacing:
    """The first pass of `walk.pacing: perceptual`: images at evenly spaced parameters, rendered cheaply."""

    samples: int = 9  # images per segment, both ends included (neighbouring segments share one)
    steps: int = 10  # denoising steps of each first-pass image
    size: int = 256  # first-pass width in pixels (height in proportion)


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
    """Assembled outputs: kind -> options (see `raywalk.outputs.assemble`)."""

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
    timing: Timing | None = None
    pacing: Pacing | None = None  # set when walk.pacing is perceptual
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

    @property
    def segments(self) -> int:
        """Segments of an interpolate walk: one between each two consecutive prompts (and back, for a loop)."""
        return len(self.prompts) if self.walk.loop else len(self.prompts) - 1

    def audio_file(self) -> Path | None:
        """The soundtrack, resolved against the job file's folder (a job from a dict: the working directory)."""
        if self.timing is None or self.timing.audio is None:
            return None
        return Path(self.source).parent / self.timing.audio

    def output_files(self) -> dict[str, str]:
        """Output kind -> file name in the run directory, for the outputs the job asks for."""
        return {kind: f"{self.name}{OUTPUT_SUFFIXES[kind]}" for kind in self.outputs.files}

    def to_dict(self) -> dict[str, Any]:
        """The job as plain data, loadable again by `job_from_dict`."""
        data = dataclasses.asdict(self)
        data.pop("source")
        data["prompts"] = list(self.prompts)
        data["walk"] = {k: v for k, v in data["walk"].items() if k in WALK_KEYS[self.walk.kind]}
        # Fields added later are written only when used, so older jobs keep their fingerprints.
        if self.walk.keyframes:
            last = len(self.walk.keyframes) - 1
            data["walk"]["keyframes"] = [kf.to_dict(k == last) for k, kf in enumerate(self.walk.keyframes)]
        else:
            data["walk"].pop("keyframes", None)
        if self.walk.pacing == "uniform":
            data["walk"].pop("pacing", None)
        for optional in ("timing", "pacing"):
            if data[optional] is None:
                del data[optional]
        if self.timing is not None:
            data["timing"] = (
                {k: v for k, v in data["timing"].items() if v is not None}
                if self.timing.audio
                else {"fps": self.timing.fps}
            )
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
    """Read and validate a YAML job file.

    Raises:
        JobError: the file cannot be read, is not a bounded YAML mapping, or does not validate.
    """
    source = str(path)
    text = _read_text(Path(path), source)
    try:
        _check_shape(text, source)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise JobError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    return job_from_dict(data, source=source, default_name=Path(path).stem)


def _read_text(path: Path, source: str) -> str:
    """The text of a regular file of at most MAX_JOB_BYTES, without opening anything else
    (a FIFO would block, /dev/zero never ends)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise JobError(f"{source}: cannot read job file: {kind}")
        if info.st_size > MAX_JOB_BYTES:
            raise JobError(
                f"{source}: cannot read job file: {info.st_size} bytes, more than the "
                f"{MAX_JOB_BYTES} a job file may have"
            )
        with open(path, "rb") as f:
            raw = f.read(MAX_JOB_BYTES + 1)
        if len(raw) > MAX_JOB_BYTES:
            raise JobError(f"{source}: cannot read job file: more than {MAX_JOB_BYTES} bytes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"{source}: cannot read job file: {getattr(exc, 'strerror', None) or exc}") from None
    if "\x00" in text:
        raise JobError(f"{source}: cannot read job file: it holds a NUL character")
    return text


def _check_shape(text: str, source: str) -> None:
    """Refuse YAML nested deeper than MAX_YAML_DEPTH or expanding (aliases included) to more than
    MAX_YAML_NODES nodes, from the parser's event stream: nothing is built, so an alias bomb or a
    20,000-deep list costs what reading it costs."""
    sizes: dict[str, int] = {}  # anchor -> expanded node count of its node
    stack: list[list[Any]] = []  # open collections: [anchor, expanded nodes inside]
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            size = sizes.get(event.anchor or "", 1) if isinstance(event, yaml.AliasEvent) else 1
            if isinstance(event, yaml.ScalarEvent) and event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 0])
            if len(stack) > MAX_YAML_DEPTH:
                raise JobError(f"{source}: nested more than {MAX_YAML_DEPTH} levels deep")
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, inside = stack.pop()
            size = 1 + inside
            if anchor:
                sizes[anchor] = size
        else:
            continue
        total += size
        if stack:
            stack[-1][1] += size
        if total > MAX_YAML_NODES:
            raise JobError(f"{source}: expands to more than {MAX_YAML_NODES} values (aliases included)")


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last).

    Merge keys (`<<: *anchor`, `<<: [*a, *b]`, `<<: {...}`) keep YAML's semantics: a key written in
    the mapping overrides a merged one, and of the merged mappings the first that has a key wins. Only
    keys written twice in one mapping are refused.
    """

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Replace `node`'s merge keys by the pairs they merge, each key once, in YAML's order of precedence.

        PyYAML 6.0.4's own tells keys apart by the identity of their strings, so of two merged mappings
        that both set `width` the last one wins where the strings are not interned.

        Raises:
            ConstructorError: a merge key whose value is not a mapping or a list of mappings.
        """
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        written: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                if key_node.tag == "tag:yaml.org,2002:value":
                    key_node.tag = "tag:yaml.org,2002:str"
                written.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"expected a mapping or list of mappings for merging, but found {source.id}",
                        source.start_mark,
                    )
                self.flatten_mapping(source)
                merged.extend(source.value)
        if len(written) == len(node.value):
            return
        seen = {self._key(k) for k, _ in written}
        kept = []
        for key_node, value_node in merged:
            key = self._key(key_node)
            if key is None or key not in seen:  # the first merged mapping that sets a key wins
                if key is not None:
                    seen.add(key)
                kept.append((key_node, value_node))
        node.value = kept + written

    def _key(self, key_node: yaml.Node) -> Any:
        """A scalar key as the constructed mapping will hold it (None for other keys, which are not compared)."""
        if not isinstance(key_node, yaml.ScalarNode):
            return None
        key = self.construct_object(key_node)
        return key if isinstance(key, (str, int, float, bool)) else None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self._refuse_duplicates(node, deep)
        return super().construct_mapping(node, deep=deep)

    def _refuse_duplicates(self, node: yaml.MappingNode, deep: bool) -> None:
        """Raise ConstructorError for a key written twice in `node` or in a mapping merged into it."""
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # the merged mappings: their own keys are checked alike
                merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for mapping in merged:
                    if isinstance(mapping, yaml.MappingNode):
                        self._refuse_duplicates(mapping, deep)
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)


def job_from_dict(data: Any, source: str = "<dict>", default_name: str = "walk") -> Job:
    """Validate plain data (a parsed job file or a run manifest's job) into a `Job`."""
    return _Validator(source).job(data, default_name)


class _Validator:
    """Turns plain data into dataclasses, raising `JobError` at the first problem."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, reason: str) -> NoReturn:
        raise JobError(f"{self.source}: {where}: {reason}")

    def section(self, data: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(where or "job", f"must be a mapping, got {_type(data)}")
        for key in data:
            if key not in allowed:
                self.fail(
                    f"{where}.{key}" if where else _short(key), f"unknown key (expected one of: {', '.join(allowed)})"
                )
        return data

    def integer(
        self,
        data: dict[str, Any],
        key: str,
        where: str,
        default: int,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{where}.{key}", f"must be an integer, got {_type(value)}")
        if minimum is not None and value < minimum:
            self.fail(f"{where}.{key}", f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(f"{where}.{key}", f"must be at most {maximum:,}, got {_short(value)}")
        return value

    def number(
        self,
        data: dict[str, Any],
        key: str,
        where: str,
        default: float,
        minimum: float | None = None,
        exclusive: bool = False,
        maximum: float | None = None,
    ) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(f"{where}.{key}", f"must be a number, got {_type(value)}")
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            self.fail(f"{where}.{key}", f"must be {'>' if exclusive else '>='} {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(f"{where}.{key}", f"must be at most {maximum:g}, got {_short(value)}")
        return float(value)

    def boolean(self, data: dict[str, Any], key: str, where: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", f"must be true or false, got {_type(value)}")
        return value

    def string(self, data: dict[str, Any], key: str, where: str, default: str) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{where}.{key}", f"must be a non-empty string, got {_type(value)}")
        return value

    def choice(self, data: dict[str, Any], key: str, where: str, default: str, choices: tuple[str, ...]) -> str:
        value = data.get(key, default)
        if value not in choices:
            self.fail(f"{where}.{key}", f"unknown {key} {_short(value)} (expected one of: {', '.join(choices)})")
        return str(value)

    # -- sections -----------------------------------------------------------

    def job(self, data: Any, default_name: str) -> Job:
        if data is None:
            self.fail("job", "file is empty")
        top = self.section(
            data,
            "",
            ("name", "prompts", "walk", "noise", "model", "chunking", "workers", "outputs", "timing", "pacing"),
        )
        name = self.string(top, "name", "job", default_name)
        if len(name) > MAX_NAME or not NAME_PATTERN.fullmatch(name):
            self.fail(
                "name",
                f"must be a file name of at most {MAX_NAME} letters, digits, '.', '_' and '-' "
                f"starting with a letter or digit, got {_short(name)}",
            )
        prompts = self.prompts(top.get("prompts"))
        timing = self.timing(top.get("timing"))
        walk, keyframe_seeds = self.walk(top.get("walk"), prompts, timing)
        noise = self.noise(top.get("noise"), walk, prompts, keyframe_seeds)
        model = self.model(top.get("model"))
        return Job(
            name=name,
            prompts=prompts,
            walk=walk,
            noise=noise,
            model=model,
            chunking=self.chunking(top.get("chunking")),
            workers=self.workers(top.get("workers")),
            outputs=self.outputs(top.get("outputs"), walk, model, timing),
            timing=timing,
            pacing=self.pacing(top.get("pacing"), walk, noise, model),
            source=self.source,
        )

    def prompts(self, data: Any) -> tuple[str, ...]:
        if data is None:
            self.fail("prompts", "missing: a job needs at least one prompt")
        if isinstance(data, str):
            data = [data]
        if not isinstance(data, list) or not data:
            self.fail("prompts", f"must be a non-empty list of strings, got {_type(data)}")
        if len(data) > MAX_PROMPTS:
            self.fail("prompts", f"at most {MAX_PROMPTS} prompts, got {len(data)}")
        for i, prompt in enumerate(data):
            if not isinstance(prompt, str):
                self.fail(f"prompts[{i}]", f"must be a string, got {_type(prompt)}")
            if not prompt.strip():
                self.fail(f"prompts[{i}]", "is empty")
            if len(prompt) > MAX_PROMPT_CHARS:
                self.fail(f"prompts[{i}]", f"is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS}")
            if "\x00" in prompt:
                self.fail(f"prompts[{i}]", "holds a NUL character")
        return tuple(data)

    def walk(self, data: Any, prompts: tuple[str, ...], timing: Timing | None) -> tuple[Walk, tuple[int | None, ...]]:
        """The walk, and the noise seed each keyframe gives (None where it gives none)."""
        w = self.section(data, "walk", tuple(f.name for f in dataclasses.fields(Walk)))
        kind = self.choice(w, "kind", "walk", "interpolate", WALK_KINDS)
        wanted = {
            "interpolate": "at least 2",
            "grid": "exactly 4",
            "text_walk": "exactly 1",
            "noise_circle": "exactly 1",
        }[kind]
        count_ok = {"interpolate": len(prompts) >= 2, "grid": len(prompts) == 4}.get(kind, len(prompts) == 1)
        if not count_ok:
            self.fail("prompts", f"{ARTICLES[kind]} {kind} walk needs {wanted} prompts, got {len(prompts)}")
        relevant = WALK_KEYS[kind]
        for key in w:
            if key not in relevant:
                self.fail(
                    f"walk.{key}",
                    f"does not apply to {ARTICLES[kind]} {kind} walk (its keys: {', '.join(sorted(relevant))})",
                )
        if timing is not None and kind != "interpolate":
            self.fail("timing", f"times an interpolate walk, not {ARTICLES[kind]} {kind} walk")
        easing = self.choice(w, "easing", "walk", "linear", EASINGS)
        loop = self.boolean(w, "loop", "walk", False)
        pacing = self.choice(w, "pacing", "walk", "uniform", PACINGS)
        if loop and ("keyframes" in w or timing is not None or pacing != "uniform"):
            self.fail(
                "walk.loop",
                "a looping walk takes no keyframes, timing or perceptual pacing "
                "(end on the first prompt again instead)",
            )
        keyframes: tuple[Keyframe, ...] = ()
        seeds: tuple[int | None, ...] = ()
        if kind == "grid":
            size, frames = self.integer(w, "size", "walk", 0, minimum=1, maximum=MAX_GRID), 0
            if "size" not in w:
                self.fail("walk.size", "missing: a grid walk needs its side length n (n x n frames)")
        else:
            size = 0
            frames = self.frames(w, kind, timing)
            if "keyframes" in w:
                keyframes, seeds = self.keyframes(w["keyframes"], prompts, easing, timing, frames or None)
                frames = keyframes[-1].frame + 1
        walk = Walk(
            kind=kind,
            frames=frames,
            size=size,
            method=self.choice(w, "method", "walk", "lerp", METHODS),
            easing=easing,
            loop=loop,
            step_size=self.number(w, "step_size", "walk", 0.005, minimum=-MAX_STEP_SIZE, maximum=MAX_STEP_SIZE),
            direction=self.choice(w, "direction", "walk", "ones", DIRECTIONS),
            direction_seed=self.integer(w, "direction_seed", "walk", 0, minimum=0, maximum=MAX_SEED),
            mode=self.choice(w, "mode", "walk", "seamless", CIRCLE_MODES),
            keyframes=keyframes,
            pacing=pacing,
        )
        return walk, seeds

    def frames(self, w: dict[str, Any], kind: str, timing: Timing | None) -> int:
        """walk.frames: as given, or the soundtrack's length in frames; 0 if only keyframes can tell."""
        audio = timing.frame(timing.duration) if timing is not None and timing.duration is not None else None
        if "frames" not in w:
            if audio is None and "keyframes" not in w:
                self.fail("walk.frames", f"missing: {ARTICLES[kind]} {kind} walk needs a frame count")
            return audio or 0
        frames = self.integer(w, "frames", "walk", 0, minimum=1, maximum=MAX_FRAMES)
        if audio is not None and frames != audio:
            assert timing is not None and timing.duration is not None
            self.fail(
                "walk.frames",
                f"is {frames}, but timing.audio lasts {timing.duration:.3f} s, {audio} frames "
                f"at {timing.fps} fps (leave walk.frames out)",
            )
        return frames

    def keyframes(
        self, data: Any, prompts: tuple[str, ...], easing: str, timing: Timing | None, frames: int | None
    ) -> tuple[tuple[Keyframe, ...], tuple[int | None, ...]]:
        """walk.keyframes: one entry per prompt at increasing frames, the first at 0, the last the walk's
        last frame (`frames - 1` when walk.frames or the soundtrack gives the length; then it may be left out)."""
        last_frame = frames - 1 if frames is not None else None
        if not isinstance(data, list) or len(data) != len(prompts):
            self.fail("walk.keyframes", f"must be a list of {len(prompts)} entries, one per prompt, got {_type(data)}")
        keyframes: list[Keyframe] = []
        seeds: list[int | None] = []
        last = len(data) - 1
        for k, entry in enumerate(data):
            where = f"walk.keyframes[{k}]"
            e = self.section(entry, where, ("at", "seconds", "easing", "seed"))
            seconds: float | None = None
            if "at" in e and "seconds" in e:
                self.fail(where, "give its position as `at` (a frame) or `seconds`, not both")
            if "at" in e:
                frame = self.integer(e, "at", where, 0, minimum=0, maximum=MAX_FRAMES - 1)
            elif "seconds" in e:
                if timing is None:
                    self.fail(f"{where}.seconds", "needs timing.fps to turn seconds into frames")
                seconds = self.number(e, "seconds", where, 0.0, minimum=0, maximum=(MAX_FRAMES - 1) / timing.fps)
                frame = timing.frame(seconds)
            elif k == 0:
                frame = 0
            elif k == last and last_frame is not None:
                frame = last_frame
            else:
                self.fail(
                    where,
                    "needs its position: `at: FRAME` or `seconds: S` (only the first, at 0, and the "
                    "last, when walk.frames or timing.audio gives the length, may leave it out)",
                )
            shown = f"frame {frame}" + (f" ({seconds:g} s)" if seconds is not None else "")
            if k == 0 and frame != 0:
                self.fail(where, f"the first keyframe starts the walk: it must be at frame 0, got {shown}")
            if k > 0 and frame <= keyframes[-1].frame:
                self.fail(where, f"must come after keyframe {k - 1} (frame {keyframes[-1].frame}), got {shown}")
            if k == last and last_frame is not None and frame != last_frame:
                self.fail(
                    where, f"the last keyframe ends the walk: it must be at its last frame, {last_frame}, got {shown}"
                )
            if k == last and "easing" in e:
                self.fail(f"{where}.easing", "the last keyframe ends the walk: no segment follows it to ease")
            keyframes.append(
                Keyframe(frame=frame, seconds=seconds, easing=self.choice(e, "easing", where, easing, EASINGS))
            )
            seeds.append(self.integer(e, "seed", where, 0, minimum=0, maximum=MAX_SEED) if "seed" in e else None)
        return tuple(keyframes), tuple(seeds)

    def timing(self, data: Any) -> Timing | None:
        if data is None:
            return None
        t = self.section(data, "timing", tuple(f.name for f in dataclasses.fields(Timing)))
        if "fps" not in t:
            self.fail("timing.fps", "missing: timing needs the frames per second of the walk")
        fps = self.integer(t, "fps", "timing", 0, minimum=1, maximum=MAX_FPS)
        if "audio" not in t:
            for key in t:
                if key != "fps":
                    self.fail(f"timing.{key}", "applies only with timing.audio")
            return Timing(fps=fps)
        audio = self.string(t, "audio", "timing", "")
        duration = (
            self.number(t, "duration", "timing", 0.0, minimum=0, exclusive=True, maximum=MAX_FRAMES / fps)
            if "duration" in t
            else None
        )
        sha256 = self.string(t, "sha256", "timing", "") if "sha256" in t else None
        if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
            self.fail("timing.sha256", f"must be 64 lowercase hexadecimal digits, got {_short(sha256)}")
        if duration is None or sha256 is None:  # a run manifest records both; a job file is checked against the file
            from raywalk.outputs.audio import probe  # librosa and soundfile only for jobs with a soundtrack

            try:
                info = probe(Path(self.source).parent / audio)
            except AudioError as exc:
                self.fail("timing.audio", str(exc))
            if sha256 is not None and sha256 != info.sha256:
                self.fail("timing.sha256", f"is not that of {audio} ({info.sha256[:12]}...)")
            if duration is not None and duration > info.duration:
                self.fail("timing.duration", f"is {duration:g} s, but {audio} lasts only {info.duration:.3f} s")
            duration, sha256 = duration or info.duration, info.sha256
        timing = Timing(
            fps=fps,
            audio=audio,
            smoothing=self.number(t, "smoothing", "timing", 0.1, minimum=0, maximum=MAX_SMOOTHING),
            floor=self.number(t, "floor", "timing", 0.2, minimum=0, maximum=1),
            duration=duration,
            sha256=sha256,
        )
        frames = timing.frame(duration)
        if not 2 <= frames <= MAX_FRAMES:
            self.fail(
                "timing.audio", f"{duration:.3f} s at {fps} fps is {frames} frames; a walk has 2 to {MAX_FRAMES:,}"
            )
        return timing

    def pacing(self, data: Any, walk: Walk, noise: Noise, model: Model) -> Pacing | None:
        if walk.pacing != "perceptual":
            if data is not None:
                self.fail("pacing", "first-pass settings apply only to walk.pacing: perceptual")
            return None
        if walk.frames < 2:
            self.fail("walk.pacing", "perceptual pacing spaces at least 2 frames")
        if noise.kind == "per_frame":
            self.fail(
                "walk.pacing",
                "per_frame noise changes the picture at every frame by itself; perceptual "
                "pacing cannot even that out (use fixed or slerp noise)",
            )
        p = self.section(data, "pacing", tuple(f.name for f in dataclasses.fields(Pacing)))
        default_size = 256 if first_pass_height(model, 256) else model.width
        size = self.integer(p, "size", "pacing", default_size, minimum=64, maximum=model.width)
        if not first_pass_height(model, size):
            self.fail(
                "pacing.size",
                f"must be model.width ({model.width}) divided by a whole factor f that also "
                f"divides model.height ({model.height}) into a multiple of 64 (the first pass averages the "
                f"job's noise down in f x f blocks), got {size}",
            )
        return Pacing(
            samples=self.integer(p, "samples", "pacing", 9, minimum=2, maximum=MAX_PACING_SAMPLES),
            steps=self.integer(p, "steps", "pacing", min(10, model.steps), minimum=1, maximum=MAX_STEPS),
            size=size,
        )

    def noise(self, data: Any, walk: Walk, prompts: tuple[str, ...], keyframe_seeds: tuple[int | None, ...]) -> Noise:
        n = self.section(data, "noise", ("kind", "seed", "seeds"))
        default_kind = "circle" if walk.kind == "noise_circle" else "fixed"
        kind = self.choice(n, "kind", "noise", default_kind, NOISE_KINDS)
        if (kind == "circle") != (walk.kind == "noise_circle"):
            self.fail(
                "noise.kind",
                "circle noise is the noise_circle walk's own, and that walk takes no other"
                if kind == "circle"
                else f"a noise_circle walk draws circle noise, not {kind!r}",
            )
        if kind == "slerp" and walk.kind not in ("interpolate", "grid"):
            self.fail(
                "noise.kind",
                f"slerp noise follows an interpolation between prompts; "
                f"{ARTICLES[walk.kind]} {walk.kind} walk has one prompt",
            )
        seed = self.integer(n, "seed", "noise", 12345, minimum=0, maximum=MAX_SEED)
        seeds: tuple[int, ...] = ()
        if "seeds" in n:
            if kind != "slerp":
                self.fail("noise.seeds", "only slerp noise takes one seed per prompt")
            raw = n["seeds"]
            if not isinstance(raw, list) or len(raw) != len(prompts):
                self.fail("noise.seeds", f"must be a list of {len(prompts)} integers, one per prompt")
            seeds = tuple(self.integer({"seeds": s}, "seeds", "noise", 0, minimum=0, maximum=MAX_SEED) for s in raw)
        given = [k for k, s in enumerate(keyframe_seeds) if s is not None]
        if given:
            if kind != "slerp":
                self.fail(
                    f"walk.keyframes[{given[0]}].seed",
                    "a keyframe's seed is the slerp noise's at its prompt: set noise.kind: slerp",
                )
            if "seeds" in n:
                self.fail("noise.seeds", "give the seeds in one place: noise.seeds or walk.keyframes[].seed")
        if kind == "slerp" and "seeds" not in n:
            seeds = tuple(
                s if s is not None else min(seed + k, MAX_SEED)
                for k, s in enumerate(keyframe_seeds or (None,) * len(prompts))
            )
        return Noise(kind=kind, seed=seed, seeds=seeds)

    def model(self, data: Any) -> Model:
        m = self.section(data, "model", tuple(f.name for f in dataclasses.fields(Model)))
        renderer = self.string(m, "renderer", "model", DEFAULT_RENDERER)
        module, _, cls = renderer.partition(":")
        if not module or not cls or not all(p.isidentifier() for p in module.split(".") + cls.split(".")):
            self.fail("model.renderer", f"must be an import path 'package.module:Class', got {renderer!r}")
        sides = {}
        for side in ("width", "height"):
            value = self.integer(m, side, "model", 512, minimum=64, maximum=MAX_SIDE)
            if value % 64:
                self.fail(
                    f"model.{side}",
                    f"must be a multiple of 64 (the latent is {side}/8 and the UNet "
                    f"halves it three times), got {value}",
                )
            sides[side] = value
        options = m.get("options", {})
        if options is None:
            options = {}
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            self.fail("model.options", f"must be a mapping of option names to values, got {_type(options)}")
        return Model(
            renderer=renderer,
            steps=self.integer(m, "steps", "model", 50, minimum=1, maximum=MAX_STEPS),
            guidance_scale=self.number(m, "guidance_scale", "model", 7.5, minimum=0, maximum=MAX_GUIDANCE),
            weights=self.string(m, "weights", "model", "download"),
            precision=self.choice(m, "precision", "model", "auto", PRECISIONS),
            batch_size=self.integer(m, "batch_size", "model", 1, minimum=1, maximum=MAX_BATCH),
            options=dict(options),
            **sides,
        )

    def chunking(self, data: Any) -> Chunking:
        c = self.section(data, "chunking", ("chunk_size", "max_attempts", "in_flight"))
        return Chunking(
            chunk_size=self.integer(c, "chunk_size", "chunking", 16, minimum=1, maximum=MAX_CHUNK),
            max_attempts=self.integer(c, "max_attempts", "chunking", 3, minimum=1, maximum=MAX_ATTEMPTS),
            in_flight=self.integer(c, "in_flight", "chunking", 2, minimum=1, maximum=MAX_IN_FLIGHT),
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

    def outputs(self, data: Any, walk: Walk, model: Model, timing: Timing | None) -> Outputs:
        o = self.section(data, "outputs", OUTPUT_KINDS + ("preview_every",))
        option_keys: dict[str, dict[str, Any]] = {
            "gif": {"fps": 10, "rubber_band": False, "resize": None},
            "mp4": {"fps": timing.fps if timing else 24, "rubber_band": False, "quality": 8},
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
            maxima = {"fps": MAX_FPS, "every": MAX_FRAMES, "columns": MAX_COLUMNS, "tile": MAX_TILE}
            for key, maximum in maxima.items():
                if key in merged:
                    merged[key] = self.integer(merged, key, where, 0, minimum=1, maximum=maximum)
            if "rubber_band" in merged:
                merged["rubber_band"] = self.boolean(merged, "rubber_band", where, False)
            if "quality" in merged:
                merged["quality"] = self.number(merged, "quality", where, 8, minimum=0)
                if merged["quality"] > 10:
                    self.fail(f"{where}.quality", f"must be between 0 and 10, got {merged['quality']}")
            if merged.get("resize") is not None:
                size = merged["resize"]
                if (
                    not isinstance(size, list)
                    or len(size) != 2
                    or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
                ):
                    self.fail(f"{where}.resize", f"must be [width, height] in pixels, got {_short(size)}")
                if max(size) > MAX_OUTPUT_SIDE:
                    self.fail(f"{where}.resize", f"sides must be at most {MAX_OUTPUT_SIDE} pixels, got {size}")
                merged["resize"] = list(size)
            self.image_size(kind, merged, walk, model)
            if kind == "mp4" and timing is not None:
                self.mp4_timing(merged, timing)
            files[kind] = merged
        preview_every = self.integer(o, "preview_every", "outputs", 0, minimum=0, maximum=MAX_FRAMES)
        return Outputs(files=files, preview_every=preview_every)

    def mp4_timing(self, options: dict[str, Any], timing: Timing) -> None:
        """A timed walk's MP4 plays at timing.fps, forwards: frame k at k / fps, with its soundtrack."""
        if options["fps"] != timing.fps:
            self.fail(
                "outputs.mp4.fps",
                f"must equal timing.fps ({timing.fps}) so that frame k shows at k / fps, got {options['fps']}",
            )
        if options["rubber_band"] and timing.audio:
            self.fail(
                "outputs.mp4.rubber_band", "a soundtrack does not play backwards: no rubber band with timing.audio"
            )

    def image_size(self, kind: str, options: dict[str, Any], walk: Walk, model: Model) -> None:
        """Refuse a grid or contact sheet too large to hold in memory."""
        frames = walk.size**2 if walk.kind == "grid" else walk.frames
        if kind == "grid":
            pixels = walk.size**2 * model.width * model.height
        elif kind == "contact_sheet":
            tiles = -(-frames // options["every"])
            rows = -(-tiles // options["columns"])
            tile_height = max(1, round(options["tile"] * model.height / model.width))
            pixels = options["columns"] * options["tile"] * rows * tile_height
        else:
            return
        if pixels > MAX_SHEET_PIXELS:
            self.fail(
                f"outputs.{kind}",
                f"would be a {pixels / 1e6:,.0f}-megapixel image, more than "
                f"{MAX_SHEET_PIXELS / 1e6:,.0f}" + (" (raise `every` or lower `tile`)" if kind != "grid" else ""),
            )


def first_pass_height(model: Model, size: int) -> int:
    """Height of the perceptual first pass at width `size`, or 0 where `size` does not fit the model.

    It fits when f = model.width / size is a whole number that divides
    model.height into a multiple of 64: the first pass then sees the job's
    own noise averaged down in f x f blocks (`raywalk.core.pacing.first_pass_trajectory`).
    """
    if size < 64 or model.width % size:
        return 0
    factor = model.width // size
    height = model.height // factor
    return height if model.height % factor == 0 and height % 64 == 0 else 0


def _type(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {_short(value)}"


def _short(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, so that a hostile value cannot flood a message."""
    text = (
        repr(value)
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) < 10**30
        else f"{str(value)[:6]}...({len(str(abs(value)))} digits)"
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."
