"""A renderer module that leaves a trace (`import_sentinel` in `sys.modules`) in any process that imports it."""

from __future__ import annotations

import import_sentinel  # noqa: F401  (the trace)
from pipeline_doubles import BrokenRenderer


class SentinelRenderer(BrokenRenderer):
    """`BrokenRenderer`, from a module whose import is visible."""
