"""The TF-free CLIP token counter against KerasCV's `SimpleTokenizer` on the same vocabulary."""

from __future__ import annotations

import pytest

from raywalk.renderers.clip_tokens import ClipTokenCounter, counter

PROMPTS = [
    "",
    "a",
    "a photograph of a dog",
    "A watercolor painting of a Golden Retriever at the beach",
    "A still life DSLR photo of a bowl of fruit",
    "The Eiffel Tower in the style of starry night",
    "   leading and trailing   whitespace\t\tand\ttabs\n\nand newlines   ",
    "UPPER case, MiXeD case and lower case",
    "punctuation!!! ?? ... ;;; :: -- (brackets) [more] {braces} <angles>",
    "it's, don't, we're, they've, I'm, we'll, he'd, O'Neil's",
    "numbers 1234567890, 3.14159, 1e-5, 2,048 x 1024 px, 50%",
    "café naïve résumé façade jalapeño Zürich Ångström",
    "東京の夜景, 富士山と桜",
    "Москва зимой, снег и огни",
    "emoji 🐶🍎🌊✨ and 👩‍🚀 astronaut",
    "html entities &amp; &lt;tag&gt; &quot;quoted&quot; &amp;amp; twice",
    "a <|startoftext|> special token and <|endoftext|> too",
    "hyphen-ated words, under_scores, slashes/and\\backslashes",
    "mathematical ∑ ∫ √ ≈ ≠ ∞ symbols and arrows → ← ↑",
    "ﬁ ligature, full-width ＡＢＣ１２３, non-breaking\u00a0space",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a very " * 40 + "long prompt",
    "a very detailed painting of " + " and ".join(f"a tiny red fox number {i}" for i in range(20)),
    "highly detailed, 8k, trending on artstation, octane render, unreal engine 5, by greg rutkowski",
    "'quoted' \"double\" `backtick` ''empty''",
    "tab\tseparated\tvalues\tand\u2003em\u2003spaces",
    "Ω omega, ß sharp s, İstanbul, ǅ titlecase",
    "x" * 300,
    "repeated repeated repeated words words words",
    "مرحبا بالعالم and עברית mixed with English",
    "zero-width\u200bjoiner and combining a\u0301 accents",
]


@pytest.fixture(scope="module")
def tokenizer(clip_vocab):
    from raywalk.renderers.kerascv import api as kerascv_api

    return kerascv_api.tokenizer(clip_vocab)


def test_counts_equal_kerascv_simple_tokenizer(clip_vocab, tokenizer):
    ours = ClipTokenCounter(clip_vocab)
    assert len(PROMPTS) >= 30
    mismatches = [
        (p, ours.count(p), len(tokenizer.encode(p))) for p in PROMPTS if ours.count(p) != len(tokenizer.encode(p))
    ]
    assert mismatches == []
    assert [ours.count(p) for p in PROMPTS[:3]] == [2, 3, 7]  # start + words + end
    assert ours.count(PROMPTS[21]) == 84 and ours.count(PROMPTS[21]) > 77


def test_counter_reads_a_vocabulary_once(clip_vocab):
    assert counter(clip_vocab) is counter(clip_vocab)
