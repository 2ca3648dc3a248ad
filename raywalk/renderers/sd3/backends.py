"""The Keras backend a Stable Diffusion 3 renderer runs on, and compiling its functions for it.

The backend is whatever ``KERAS_BACKEND`` said when Keras was first imported in the process
(a worker sets it from `choose_backend` before anything imports Keras). Functions are compiled
as KerasHub's `make_generate_function` does: `jax.jit` over a stateless scope, `tf.function`
(XLA where `generate` would use it: on a GPU), or eager PyTorch under `torch.no_grad`.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import Any

from raywalk.errors import RendererError

log = logging.getLogger(__name__)


def choose_backend(wanted: str) -> str:
    """`wanted`, or for "auto" the fastest backend installed here (JAX, then PyTorch, then TensorFlow:
    KerasHub's SD3 runs fastest on JAX)."""
    if wanted != "auto":
        return wanted
    return next((b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None), "tensorflow")


def check_backend(wanted: str) -> None:
    """Refuse to run on another Keras backend than the job asked for.

    Raises:
        RendererError: Keras was imported with another backend.
    """
    import keras

    if wanted not in ("auto", keras.config.backend()):
        raise RendererError(
            f"KerasHub renderer: the job asks for Keras backend {wanted!r}, but this process runs "
            f"{keras.config.backend()!r}; set KERAS_BACKEND={wanted} before Keras is imported"
        )


def on_gpu() -> bool:
    """Whether Keras runs on a GPU here; with TensorFlow, first let it allocate GPU memory as needed."""
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # TensorFlow already initialised its GPUs: growth is fixed by then
                log.info("GPU memory growth not changed: TensorFlow already initialised %s", gpu.name)
        return bool(gpus)
    if backend == "jax":
        import jax

        return bool(jax.devices()[0].platform == "gpu")
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def dtype_policy(precision: str, gpu: bool) -> str:
    """The backbone's dtype policy: "auto" is float16 on a GPU (the tutorial's; SD3's weights are
    stored in float16) and float32 on a CPU (JAX's CPU attention has no float16)."""
    if precision != "auto":
        return precision
    return "float16" if gpu else "float32"


def use_xla(setting: str | bool, gpu: bool) -> bool:
    """Whether `tf.function` compiles with XLA: "auto" on a GPU, as `generate`; TensorFlow only."""
    import keras

    return bool(gpu if setting == "auto" else setting) and keras.config.backend() == "tensorflow"


def compile_for_backend(function: Callable[..., Any], backbone: Any, xla: bool) -> Callable[..., Any]:
    """`function` compiled for the active Keras backend, as KerasHub's `make_generate_function` does.

    Raises:
        RendererError: a Keras backend other than jax, tensorflow and torch.
    """
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import itertools

        import jax

        @jax.jit
        def stateless(state: tuple[list[Any], list[Any]], *args: Any) -> Any:
            mapping = itertools.chain(
                zip(backbone.trainable_variables, state[0], strict=True),
                zip(backbone.non_trainable_variables, state[1], strict=True),
            )
            with keras.StatelessScope(state_mapping=mapping):
                return function(*args)

        def run_jax(*args: Any) -> Any:
            state = (
                [v.value for v in backbone.trainable_variables],
                [v.value for v in backbone.non_trainable_variables],
            )
            return stateless(state, *args)

        return run_jax
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=xla)
    if backend == "torch":
        import torch

        def run_torch(*args: Any) -> Any:
            with torch.no_grad():
                return function(*args)

        return run_torch
    raise RendererError(f"KerasHub renderer: Keras backend {backend!r} is not supported (jax, tensorflow, torch)")
