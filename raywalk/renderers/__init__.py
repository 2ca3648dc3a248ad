"""Renderers: the contract, shared helpers and the shipped renderers.

- `contract`: what a renderer is, loading one by import path, checking it at planning, its `Traits`;
- `weights`, `clip_tokens`, `batches`: KerasCV's weight files and the CLIP vocabulary, CLIP token
  counts without TensorFlow, fixed-shape batches;
- `kerascv/`: Stable Diffusion 1.4 and 2.1 through KerasCV;
- `sd3/`: Stable Diffusion 3 and 3.5 through KerasHub.

Renderers import no Ray (import-linter checks it): they run inside whatever process hosts them."""
