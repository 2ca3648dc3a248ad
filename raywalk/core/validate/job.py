"""The validator: a job's plain data in, a `Job` out, section by section in the order they depend on each other."""

from __future__ import annotations

from typing import Any

from raywalk.core.job import Job
from raywalk.core.limits import MAX_NAME, MAX_PROMPT_CHARS, MAX_PROMPTS, NAME_PATTERN
from raywalk.core.validate.fields import short, type_name
from raywalk.core.validate.model import ModelRules
from raywalk.core.validate.outputs import OutputRules
from raywalk.core.validate.timing import TimingRules
from raywalk.core.validate.walk import WalkRules

__all__ = ["Validator"]


class Validator(WalkRules, TimingRules, ModelRules, OutputRules):
    """All of a job's sections; `job` reads them in order, raising `JobError` at the first problem."""

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
                f"starting with a letter or digit, got {short(name)}",
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
            self.fail("prompts", f"must be a non-empty list of strings, got {type_name(data)}")
        if len(data) > MAX_PROMPTS:
            self.fail("prompts", f"at most {MAX_PROMPTS} prompts, got {len(data)}")
        for i, prompt in enumerate(data):
            if not isinstance(prompt, str):
                self.fail(f"prompts[{i}]", f"must be a string, got {type_name(prompt)}")
            if prompt and not prompt.strip():
                self.fail(f"prompts[{i}]", "is empty")
            if len(prompt) > MAX_PROMPT_CHARS:
                self.fail(f"prompts[{i}]", f"is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS}")
            if "\x00" in prompt:
                self.fail(f"prompts[{i}]", "holds a NUL character")
        return tuple(data)
