"""CLIP token counts without TensorFlow.

Why this exists: `raywalk plan` and the driver must refuse a prompt longer than
CLIP's 77 tokens before anything is written, and neither may import
TensorFlow (`import keras_cv` does, whatever the Keras backend: seconds of
start-up and a screenful of absl/oneDNN lines). KerasCV's `SimpleTokenizer`
is a small pure-Python byte-pair encoder (from openai/CLIP) behind that import;
this module counts its tokens the same way from the same vocabulary file
(``bpe_simple_vocab_16e6.txt.gz``, found by `raywalk.renderers.weights.vocabulary`).
tests/test_clip_tokens.py holds the counts equal to `SimpleTokenizer`'s.
"""

from __future__ import annotations

import functools
import gzip
import html
import itertools
import math
from pathlib import Path

import regex  # a keras-cv dependency; its \p{L} and \p{N} classes are what CLIP splits words by

from raywalk.errors import RendererError

MAX_TOKENS = 77  # CLIP's context, start and end tokens included
_MERGES = 49152 - 256 - 2  # the vocabulary's merge rules that CLIP uses (the rest of the file is unused)
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_WORDS = regex.compile(
    "|".join(regex.escape(s) for s in _SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_SPACES = regex.compile(r"\s+")


@functools.lru_cache(maxsize=1)
def _byte_symbols() -> tuple[str, ...]:
    """CLIP's reversible map of the 256 byte values to printable characters, by byte value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    symbols = dict(zip(printable, printable)) | {b: 256 + n for n, b in enumerate(others)}
    return tuple(chr(symbols[b]) for b in range(256))


class ClipTokenCounter:
    """Counts the CLIP tokens of a prompt as KerasCV's `SimpleTokenizer.encode` makes them."""

    def __init__(self, vocab: Path) -> None:
        with gzip.open(vocab) as f:
            lines = f.read().decode("utf-8").split("\n")[1 : _MERGES + 1]
        self._ranks: dict[tuple[str, str], int] = {
            (first, second): rank for rank, (first, second) in enumerate(line.split() for line in lines)
        }
        self._cache: dict[str, int] = {}

    def count(self, prompt: str) -> int:
        """The number of CLIP tokens of `prompt`, the start and end tokens included."""
        text = _SPACES.sub(" ", html.unescape(html.unescape(prompt)).strip()).strip().lower()
        symbols = _byte_symbols()
        total = 2
        for word in _WORDS.findall(text):
            total += 1 if word in _SPECIAL else self._word_tokens("".join(symbols[b] for b in word.encode()))
        return total

    def _word_tokens(self, word: str) -> int:
        """How many tokens byte-pair encoding leaves of one word (its last symbol marked end-of-word)."""
        if word not in self._cache:
            parts = [*word[:-1], word[-1] + "</w>"]
            while len(parts) > 1:
                pairs = set(itertools.pairwise(parts))
                best = min(pairs, key=lambda pair: self._ranks.get(pair, math.inf))
                if best not in self._ranks:
                    break
                merged, i = [], 0
                while i < len(parts):
                    if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                        merged.append(parts[i] + parts[i + 1])
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
            self._cache[word] = len(parts)
        return self._cache[word]


@functools.lru_cache(maxsize=4)
def counter(vocab: Path) -> ClipTokenCounter:
    """A counter for the vocabulary file `vocab`, read once per process."""
    return ClipTokenCounter(vocab)


def check_length(prompt: str, count: int, model: str) -> int:
    """`count`, the CLIP tokens of `prompt` (start and end included), once known to fit `model`'s context.

    Raises:
        RendererError: more than 77 tokens (KerasCV and KerasHub would cut the prompt silently), naming the
            prompt and its length.
    """
    if count > MAX_TOKENS:
        short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        raise RendererError(
            f"prompt {short!r} is {count} CLIP tokens long; {model} takes at most {MAX_TOKENS}"
            " (start and end tokens included)"
        )
    return count
