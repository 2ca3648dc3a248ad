"""The pure core: the job model and its validation, trajectories, walk timing, pacing and plans.

Plain numpy and dataclasses: no storage, no Ray, no ML framework (import-linter checks it)."""
