"""Fixed-shape batches: a renderer pads every batch to its `batch_size`, so its sampler is compiled once."""

from __future__ import annotations

import numpy as np


def pad_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """`rows` padded to `size` rows by repeating the last (the caller drops the padding's images)."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)]) if len(rows) < size else rows
