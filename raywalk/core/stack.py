"""The model stack a frame is rendered with, and how two stacks differ.

A frame's bytes are a pure function of (job, frame, stack): the same job
rendered with another Keras, KerasCV/KerasHub, backend library, Keras backend,
precision or device kind can give other pixels (keras-hub #2732 changed SD3's
embeddings between 0.29 and 0.30). A run is rendered with one stack; the driver
compares each worker's with the run's before it hands out a chunk
(`raywalk.exec.driver`), and the run's manifest records every stack it was rendered
with (`StackRecord`). Pure: the worker gathers the facts (`raywalk.exec.worker`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

# The packages a stack names, in the order a difference is looked for (the first one differing is named).
PACKAGES = ("raywalk", "keras", "keras-cv", "keras-hub", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch")
# Installed packages that run each Keras backend (KerasCV needs TensorFlow whatever the backend).
BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
ID_LENGTH = 12


class StackDataError(ValueError):
    """Stack data (from a manifest or a worker) that is not a stack."""


@dataclasses.dataclass(frozen=True)
class Stack:
    """What a worker renders with: package versions, the Keras backend, the precision and the device kind.

    `packages` maps a package name (of `PACKAGES`) to its installed version;
    `backend` is the Keras backend (None where Keras is not installed);
    `precision` the renderer's dtype policy (else the job's `model.precision`);
    `device` "cpu" or the GPU's name as the framework reports it ("gpu" when it
    reports none).
    """

    packages: Mapping[str, str]
    backend: str | None
    precision: str
    device: str

    def to_json(self) -> dict[str, Any]:
        """The stack as JSON-ready data, its `id` included (recomputed on reading, never trusted)."""
        return {"id": self.id, **self._content()}

    def _content(self) -> dict[str, Any]:
        return {
            "packages": {name: self.packages[name] for name in _ordered(self.packages)},
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
        }

    @property
    def id(self) -> str:
        """A short stable id: the first 12 hex digits of the SHA-256 of the stack's canonical JSON."""
        canonical = json.dumps(self._content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:ID_LENGTH]

    def entries(self) -> dict[str, str | None]:
        """Every entry by name, in the order differences are looked for: packages, then Keras backend,
        precision and device."""
        return {
            **{name: self.packages[name] for name in _ordered(self.packages)},
            "keras backend": self.backend,
            "precision": self.precision,
            "device": self.device,
        }

    def summary(self) -> str:
        """One line for people: `raywalk 0.6.0, keras 3.15.1, ..., backend tensorflow, float32, cpu`."""
        packages = ", ".join(f"{name} {self.packages[name]}" for name in _ordered(self.packages))
        return f"{packages}, backend {self.backend or 'none'}, {self.precision}, {self.device}"

    @classmethod
    def from_json(cls, data: Any) -> Stack:
        """A stack from `to_json` data (an `id` in it is ignored: it is derived).

        Raises:
            StackDataError: the data is not a stack.
        """
        if not isinstance(data, dict):
            raise StackDataError(f"not an object but {type(data).__name__}")
        packages = data.get("packages")
        if not isinstance(packages, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in packages.items()
        ):
            raise StackDataError("packages is not a mapping of names to versions")
        backend, precision, device = data.get("backend"), data.get("precision"), data.get("device")
        if not isinstance(backend, (str, type(None))):
            raise StackDataError(f"backend is {type(backend).__name__}")
        for key, value in (("precision", precision), ("device", device)):
            if not isinstance(value, str):
                raise StackDataError(f"{key} is {type(value).__name__}")
        return cls(packages=dict(packages), backend=backend, precision=str(precision), device=str(device))


@dataclasses.dataclass(frozen=True)
class StackRecord:
    """A stack a run was rendered with: when it was first used, and whether it came in as an allowed change
    (`--allow-stack-change`) rather than as the run's first stack."""

    stack: Stack
    first_used: str
    allowed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**self.stack.to_json(), "first_used": self.first_used, "allowed": self.allowed}

    @classmethod
    def from_json(cls, data: Any) -> StackRecord:
        """Raises: StackDataError: the data is not a stack record."""
        stack = Stack.from_json(data)
        first_used, allowed = data.get("first_used"), data.get("allowed")
        if not isinstance(first_used, str):
            raise StackDataError(f"first_used is {type(first_used).__name__}")
        if not isinstance(allowed, bool):
            raise StackDataError(f"allowed is {type(allowed).__name__}")
        return cls(stack=stack, first_used=first_used, allowed=allowed)


def _ordered(packages: Mapping[str, str]) -> list[str]:
    """Package names in `PACKAGES` order, any others after them alphabetically."""
    known = [name for name in PACKAGES if name in packages]
    return known + sorted(set(packages) - set(known))


def first_difference(ours: Stack, theirs: Stack) -> tuple[str, str | None, str | None] | None:
    """The first entry (`Stack.entries` order) in which two stacks differ: (name, ours, theirs), None for
    an entry one side lacks; None when they are the same stack."""
    a, b = ours.entries(), theirs.entries()
    for name in _difference_order(a, b):
        if a.get(name) != b.get(name):
            return name, a.get(name), b.get(name)
    return None


def _difference_order(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Entry names of both stacks: packages in `PACKAGES` order (others after them), then the rest."""
    rest = ("keras backend", "precision", "device")
    packages = {name: "" for name in (*a, *b) if name not in rest}
    return [*_ordered(packages), *rest]


def describe_difference(workers: Stack, run: Stack, workers_label: str = "on the workers") -> str:
    """`keras 3.15.1 on the workers, 3.14.0 in the run`: the first entry that differs, with both values
    ("none" where a side lacks it); "" for the same stack."""
    found = first_difference(workers, run)
    if found is None:
        return ""
    name, ours, theirs = found
    return f"{name} {ours or 'none'} {workers_label}, {theirs or 'none'} in the run"
