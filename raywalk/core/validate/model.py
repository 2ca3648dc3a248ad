"""Validation of the noise, the model, and how the work is chunked and spread over workers."""

from __future__ import annotations

import dataclasses
from typing import Any

from raywalk.core.job import DEFAULT_RENDERER, Chunking, Model, Noise, Walk, Workers
from raywalk.core.kinds import ARTICLES, NoiseKind, Precision, WalkKind
from raywalk.core.limits import (
    MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_CHUNK,
    MAX_GUIDANCE,
    MAX_IN_FLIGHT,
    MAX_RESTARTS,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MAX_WORKERS,
)
from raywalk.core.validate.fields import Fields, type_name

__all__ = ["ModelRules"]


class ModelRules(Fields):
    """The `noise`, `model`, `chunking` and `workers` sections."""

    def noise(self, data: Any, walk: Walk, prompts: tuple[str, ...], keyframe_seeds: tuple[int | None, ...]) -> Noise:
        n = self.section(data, "noise", ("kind", "seed", "seeds"))
        default_kind = NoiseKind.CIRCLE if walk.kind == WalkKind.NOISE_CIRCLE else NoiseKind.FIXED
        kind = self.choice(n, "kind", "noise", default_kind, NoiseKind)
        if (kind == NoiseKind.CIRCLE) != (walk.kind == WalkKind.NOISE_CIRCLE):
            self.fail(
                "noise.kind",
                "circle noise is the noise_circle walk's own, and that walk takes no other"
                if kind == NoiseKind.CIRCLE
                else f"a noise_circle walk draws circle noise, not {kind.value!r}",
            )
        if kind == NoiseKind.SLERP and walk.kind not in (WalkKind.INTERPOLATE, WalkKind.GRID):
            self.fail(
                "noise.kind",
                f"slerp noise follows an interpolation between prompts; "
                f"{ARTICLES[walk.kind]} {walk.kind} walk has one prompt",
            )
        seed = self.integer(n, "seed", "noise", 12345, minimum=0, maximum=MAX_SEED)
        seeds: tuple[int, ...] = ()
        if "seeds" in n:
            if kind != NoiseKind.SLERP:
                self.fail("noise.seeds", "only slerp noise takes one seed per prompt")
            raw = n["seeds"]
            if not isinstance(raw, list) or len(raw) != len(prompts):
                self.fail("noise.seeds", f"must be a list of {len(prompts)} integers, one per prompt")
            seeds = tuple(self.integer({"seeds": s}, "seeds", "noise", 0, minimum=0, maximum=MAX_SEED) for s in raw)
        given = [k for k, s in enumerate(keyframe_seeds) if s is not None]
        if given:
            if kind != NoiseKind.SLERP:
                self.fail(
                    f"walk.keyframes[{given[0]}].seed",
                    "a keyframe's seed is the slerp noise's at its prompt: set noise.kind: slerp",
                )
            if "seeds" in n:
                self.fail("noise.seeds", "give the seeds in one place: noise.seeds or walk.keyframes[].seed")
        if kind == NoiseKind.SLERP and "seeds" not in n:
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
            self.fail("model.options", f"must be a mapping of option names to values, got {type_name(options)}")
        return Model(
            renderer=renderer,
            steps=self.integer(m, "steps", "model", 50, minimum=1, maximum=MAX_STEPS),
            guidance_scale=self.number(m, "guidance_scale", "model", 7.5, minimum=0, maximum=MAX_GUIDANCE),
            weights=self.string(m, "weights", "model", "download"),
            precision=self.choice(m, "precision", "model", Precision.AUTO, Precision),
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
