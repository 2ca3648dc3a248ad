"""The driver's public names, where they have always been imported from: `render` and `resume`
(`raywalk.exec.render`), `WorkerSpec` (`raywalk.exec.cluster`), `Outcome`, and the helpers the CLI and the
bench use. The driver itself lives in `raywalk.exec`: render (the run's phases), session (Ray plumbing),
pool (the workers), dispatch (the chunk loop), tasks (helper tasks), interrupts (SIGINT/SIGTERM)."""

from __future__ import annotations

from raywalk.core.commands import resume_command
from raywalk.exec.cluster import WorkerSpec
from raywalk.exec.phases import run_manifest
from raywalk.exec.render import Outcome, render, resume
from raywalk.exec.tasks import assemble_outputs

__all__ = ["Outcome", "WorkerSpec", "assemble_outputs", "render", "resume", "resume_command", "run_manifest"]
