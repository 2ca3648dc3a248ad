"""Benchmark: raywalk's KerasHub Stable Diffusion 3 renderer against KerasHub's `StableDiffusion3TextToImage.generate`.

Both run on the same random-weight backbone (no download) with the same prompts and latents
(`generate`'s own: `keras.random.normal` with the batch's seed); each is compiled first, so
tracing is not timed. The renderer is timed on `render` alone (a walk encodes its keyframes
once); `generate` encodes the prompt and the negative prompt on every call, which is its API.
Prints seconds per frame (median of the repeats), the speed-up and the largest pixel difference.

Needs keras, keras-hub and a Keras backend; no Ray, no KerasCV, and no TensorFlow with jax or
torch (keras-hub's wheel asks for tensorflow-text on Linux; without TensorFlow install it with
``pip install --no-deps keras-hub==0.32.0`` and then absl-py numpy packaging regex rich kagglehub
kagglesdk==0.1.28 sentencepiece tokenizers pyyaml).

    KERAS_BACKEND=jax python bench/sampler_sd3.py                      # tiny, 128x128, batch 2, 3 and 28 steps
    KERAS_BACKEND=jax python bench/sampler_sd3.py --config medium --size 512 --batch 4 --steps 28 --frames 8
    python bench/sampler_sd3.py --smoke                                # tiny, 32x32, 1 frame, 1 step: does it run
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
PROMPTS = ["A watercolor painting of a Golden Retriever at the beach", "A still life DSLR photo of a bowl of fruit"]


class NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import hook that makes this process a machine without TensorFlow: `import tensorflow`
    (and tensorflow_text) fails as if it were not installed, and nothing stays in `sys.modules`.
    (`find_spec` still answers, so that PyTorch's import-free probing does not fail.)"""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name.partition(".")[0] in ("tensorflow", "tensorflow_text"):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        raise ModuleNotFoundError(
            f"No module named {spec.name!r} (bench/sampler_sd3.py --no-tensorflow)", name=spec.name
        )

    def exec_module(self, module: Any) -> None:
        """Never reached: `create_module` refuses."""


def medium_backbone(size: int, dtype: str | None) -> Any:
    """A `StableDiffusion3Backbone` of Stable Diffusion 3 medium's shape (MMDiT 1536 wide, 24 layers and
    heads; CLIP-L; CLIP-G; VAE 128-512 filters), with random weights: real-size timing without a download.

    The shape is that of KerasHub's conversion script (tools/checkpoint_conversion/
    convert_stable_diffusion_3_checkpoints.py); the preset itself is not read.
    """
    import keras
    import keras_hub

    from raywalk.renderers.sd3.kerashub_api import vae_backbone

    keras.utils.set_random_seed(0)
    return keras_hub.models.StableDiffusion3Backbone(
        mmdit_patch_size=2,
        mmdit_hidden_dim=64 * 24,
        mmdit_num_layers=24,
        mmdit_num_heads=24,
        mmdit_position_size=192,
        mmdit_qk_norm=None,
        mmdit_dual_attention_indices=None,
        vae=vae_backbone(
            encoder_num_filters=[128, 256, 512, 512],
            encoder_num_blocks=[2, 2, 2, 2],
            decoder_num_filters=[512, 512, 256, 128],
            decoder_num_blocks=[3, 3, 3, 3],
            sampler_method="mode",
            dtype=dtype,
            name="vae",
        ),
        clip_l=keras_hub.models.CLIPTextEncoder(
            49408, 768, 768, 12, 12, 3072, "quick_gelu", -2, dtype=dtype, name="clip_l"
        ),
        clip_g=keras_hub.models.CLIPTextEncoder(
            49408, 1280, 1280, 32, 20, 5120, "gelu", -2, dtype=dtype, name="clip_g"
        ),
        image_shape=(size, size, 3),
        dtype=dtype,
    )


def main() -> None:
    """Parse flags, build the backbone once, time both samplers for each step count."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["tiny", "medium"], default="tiny", help="backbone shape (random weights)")
    p.add_argument("--size", type=int, default=128, help="image width and height (multiple of 16)")
    p.add_argument("--batch", type=int, default=2, help="frames per sampler call")
    p.add_argument("--steps", type=int, nargs="+", default=[3, 28], help="denoising steps (one run each)")
    p.add_argument(
        "--frames", type=int, default=0, help="frames timed per repeat, a multiple of --batch (default: one batch)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    p.add_argument("--guidance", type=float, default=7.0, help="guidance scale (<= 1: no guidance, as turbo)")
    p.add_argument("--precision", default="auto", help="dtype policy: auto (float16 on a GPU), float32, ...")
    p.add_argument("--no-tensorflow", action="store_true", help="refuse to import TensorFlow (jax and torch)")
    p.add_argument("--smoke", action="store_true", help="tiny, 32x32, batch 1, 1 step, 1 repeat: does it run")
    args = p.parse_args()
    if args.smoke:
        args.config, args.size, args.batch, args.steps, args.frames, args.repeats = "tiny", 32, 1, [1], 1, 1
    frames = args.frames or args.batch
    if frames % args.batch:
        p.error("--frames must be a multiple of --batch")
    if args.no_tensorflow:
        sys.meta_path.insert(0, NoTensorFlow())
    print(
        "command:",
        shlex.join([f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}", "python", *sys.argv]),
        flush=True,
    )

    import keras
    import keras_hub
    import numpy as np

    from raywalk.renderers.sd3 import backends
    from raywalk.renderers.sd3.renderer import StableDiffusion3Renderer
    from raywalk.renderers.sd3.tiny import tiny_backbone, tiny_preprocessor

    keras.config.disable_interactive_logging()
    on_gpu = backends.on_gpu()
    dtype = backends.dtype_policy(args.precision, on_gpu)
    t0 = time.perf_counter()
    if args.config == "tiny":
        backbone = tiny_backbone(args.size, args.size, dtype)
    else:
        backbone = medium_backbone(args.size, dtype)
    preprocessor = tiny_preprocessor()  # token ids only: the vocabulary does not change the timing
    t2i = keras_hub.models.StableDiffusion3TextToImage(backbone=backbone, preprocessor=preprocessor)
    print(
        f"{'GPU' if on_gpu else 'CPU'}, Keras {keras.__version__} ({keras.config.backend()}), "
        f"KerasHub {keras_hub.__version__}, SD3 {args.config} random weights ({backbone.count_params() / 1e6:,.1f}M "
        f"parameters, {dtype}), {args.size}x{args.size}, batch {args.batch}, {frames} frames, "
        f"guidance {args.guidance}; built in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    prompts = [PROMPTS[i % 2] for i in range(frames)]
    latent = (args.batch, args.size // 8, args.size // 8, 16)
    noise = np.concatenate(
        [
            np.asarray(keras.ops.convert_to_numpy(keras.random.normal(latent, dtype="float32", seed=1000 + i)))
            for i in range(0, frames, args.batch)
        ]
    )

    def reference(steps: int) -> np.ndarray:
        out = [
            t2i.generate(
                {"prompts": prompts[i : i + args.batch], "negative_prompts": [""] * args.batch},
                num_steps=steps,
                guidance_scale=args.guidance,
                seed=1000 + i,
            )
            for i in range(0, frames, args.batch)
        ]
        return np.concatenate(out)

    def timed(run: Any) -> tuple[float, np.ndarray]:
        times, out = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = run()
            times.append((time.perf_counter() - t0) / frames)
        return statistics.median(times), out

    for steps in args.steps:
        renderer = StableDiffusion3Renderer.from_backbone(
            backbone,
            preprocessor,
            width=args.size,
            height=args.size,
            steps=steps,
            guidance_scale=args.guidance,
            weights="random",
            precision=args.precision,
            batch_size=args.batch,
            config="tiny" if args.config == "tiny" else "preset",
        )  # medium: the preset's shape, random weights
        encodings = renderer.encode_text(prompts)
        renderer.warm_up()
        # keras-hub 0.32.0's generate keeps the schedule of the step count it was first compiled for:
        # compile() drops its compiled function before each step count (see tests/test_kerashub.py).
        t2i.compile()
        t2i.generate(
            {"prompts": prompts[: args.batch], "negative_prompts": [""] * args.batch},
            num_steps=steps,
            guidance_scale=args.guidance,
            seed=0,
        )
        t_ref, ref = timed(lambda steps=steps: reference(steps))
        t_ours, ours = timed(lambda renderer=renderer, encodings=encodings: renderer.render(encodings, noise))
        diff = np.abs(ours.astype(int) - ref.astype(int))
        print(
            f"steps {steps:3d}: generate {t_ref:8.3f} s/frame | raywalk {t_ours:8.3f} s/frame | "
            f"speed-up {t_ref / t_ours:.2f}x | max pixel diff {diff.max()} ({np.count_nonzero(diff) / diff.size:.4%}"
            f" of values) | median of {args.repeats} | {renderer.info}",
            flush=True,
        )
    print("imported:", {m: m in sys.modules for m in ("tensorflow", "ray", "keras_cv")})


if __name__ == "__main__":
    main()
