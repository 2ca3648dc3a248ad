"""One SHA-256 helper for files and byte blocks: weights, soundtracks, outputs and staged presets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = 1 << 22  # 4 MiB: a file is hashed a block at a time, never read whole


def sha256_blocks(blocks: Iterable[bytes]) -> tuple[str, int]:
    """(hex SHA-256, byte count) of the concatenated `blocks`."""
    digest, size = hashlib.sha256(), 0
    for block in blocks:
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def file_blocks(path: str | Path, block: int = BLOCK) -> Iterable[bytes]:
    """The bytes of a local file, `block` at a time."""
    with open(path, "rb") as src:
        while data := src.read(block):
            yield data


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a local file, read a block at a time.

    Raises:
        OSError: the file cannot be read.
    """
    return sha256_blocks(file_blocks(path))[0]
