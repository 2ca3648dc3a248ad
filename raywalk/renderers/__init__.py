"""Renderers: the contract, shared helpers (weights, CLIP tokens) and the KerasCV and KerasHub SD3 renderers.

Renderers import no Ray (import-linter checks it): they run inside whatever process hosts them."""
