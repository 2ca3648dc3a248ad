"""Every use of KerasHub's private API (`keras_hub.src`), in one place: tied to keras-hub 0.32.0.

The project's extra pins keras-hub 0.32.0; check these functions first when that pin moves.
KerasHub is imported inside each function: the driver imports the renderer to check a job and
must stay light.
"""

from __future__ import annotations

from typing import Any


def kerashub() -> Any:
    """`keras_hub`, made to tokenize without TensorFlow where TensorFlow is missing.

    keras-hub 0.32.0 tokenizes in Python (HF `tokenizers`) outside `tf.function`, but
    `CLIPTokenizer._set_vocabulary_and_merges_tokenizers` reads `self.vocabulary`, which only its
    TensorFlow path sets: without TensorFlow no CLIP tokenizer can be built or loaded. The
    patch sets the two attributes first (what the TensorFlow path would have done).
    """
    import keras_hub
    from keras_hub.src.models.clip.clip_tokenizer import CLIPTokenizer
    from keras_hub.src.utils.tensor_utils import tf

    original = CLIPTokenizer._set_vocabulary_and_merges_tokenizers
    if tf is None and not getattr(original, "raywalk_patch", False):

        def set_vocabulary_and_merges(self: Any, vocabulary: dict[str, int], merges: list[str]) -> None:
            self.vocabulary, self.merges = dict(vocabulary), list(merges)
            original(self, vocabulary, merges)

        set_vocabulary_and_merges.raywalk_patch = True  # type: ignore[attr-defined]
        CLIPTokenizer._set_vocabulary_and_merges_tokenizers = set_vocabulary_and_merges
    return keras_hub


def vae_backbone(**kwargs: Any) -> Any:
    """KerasHub's VAE (`keras_hub.src.models.vae.vae_backbone.VAEBackbone`: not exported in 0.32.0)."""
    from keras_hub.src.models.vae.vae_backbone import VAEBackbone

    return VAEBackbone(**kwargs)


def byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE uses for bytes (CLIP's base vocabulary)."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode()[1])


def python_preprocessing(preprocessor: Any) -> Any:
    """`preprocessor` able to run without TensorFlow.

    `CLIPPreprocessor(to_lower=True)` lowercases with `tf.strings.lower`; its tokenizer's
    Python path lowercases anyway, so where TensorFlow is missing the flag is turned off and
    the token ids are the same.
    """
    from keras_hub.src.utils.tensor_utils import tf

    if tf is None:
        for clip in (preprocessor.clip_l_preprocessor, preprocessor.clip_g_preprocessor):
            clip.to_lower = False
    return preprocessor
