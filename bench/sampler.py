"""Benchmark: raywalk's KerasCV renderer against KerasCV's `generate_image`.

Both run on the same random-weight sub-models (no download needed) with the
same encodings and noise; each is warmed up first so tracing is not timed.
Prints seconds per frame for both, the speed-up and the largest pixel difference.

    python bench/sampler.py                          # 128x128, batch 2, 3 and 25 steps
    python bench/sampler.py --size 512 --batch 4 --steps 50 --frames 8   # e.g. on a GPU
    python bench/sampler.py --smoke                  # 128x128, batch 1, 1 step: does it still run (CPU, ~1 min)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from raywalk.renderers.weights import VOCAB, keras_cache

CLIP_VOCAB = (
    Path(os.environ.get("RAYWALK_CLIP_DIR", Path(__file__).resolve().parents[2] / "shared" / "clip")) / VOCAB.name
)


def seed_keras_cache(vocab: Path) -> None:
    """Without internet KerasCV cannot fetch its CLIP vocabulary: give it a private cache holding `vocab`."""
    if (keras_cache() / VOCAB.name).is_file() or not vocab.is_file():
        return
    home = Path(tempfile.mkdtemp(prefix="raywalk-bench-keras-"))
    (home / "datasets").mkdir()
    shutil.copy(vocab, home / "datasets" / VOCAB.name)
    os.environ["KERAS_HOME"] = str(home)


def main() -> None:
    """Parse flags, build the models once, time both samplers for each step count."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128, help="image width and height (multiple of 128 for KerasCV)")
    p.add_argument("--batch", type=int, default=2, help="frames per UNet batch")
    p.add_argument("--steps", type=int, nargs="+", default=[3, 25], help="denoising steps (one run each)")
    p.add_argument("--frames", type=int, default=0, help="frames timed per run (default: one batch)")
    p.add_argument("--version", default="v1.4", choices=["v1.4", "v2.1"])
    p.add_argument(
        "--clip-vocab",
        type=Path,
        default=CLIP_VOCAB,
        help="CLIP vocabulary to use offline when KerasCV's cache lacks it",
    )
    p.add_argument("--smoke", action="store_true", help="the smallest run (128x128, batch 1, 1 step): does it run")
    args = p.parse_args()
    if args.smoke:  # KerasCV's UNet has no smaller size: building it is most of the time
        args.size, args.batch, args.steps, args.frames = 128, 1, [1], 1
    frames = args.frames or args.batch
    seed_keras_cache(args.clip_vocab)

    import keras
    import keras_cv
    import tensorflow as tf

    from raywalk.renderers.kerascv.models import build_models
    from raywalk.renderers.kerascv.renderer import KerasCVRenderer

    keras.config.disable_interactive_logging()  # generate_image's per-step progress bar, not timed
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    t0 = time.perf_counter()
    models = build_models(args.version, args.size, args.size, "random")
    print(
        f"{device}, KerasCV {keras_cv.__version__}, SD {args.version} random weights, {args.size}x{args.size}, "
        f"batch {args.batch}, {frames} frames; models built in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    sd_cls = keras_cv.models.StableDiffusion if args.version == "v1.4" else keras_cv.models.StableDiffusionV2
    sd = sd_cls(args.size, args.size, jit_compile=False)
    sd._text_encoder, sd._diffusion_model = models.text_encoder, models.diffusion_model
    sd._decoder, sd._tokenizer = models.decoder, models.tokenizer

    rng = np.random.default_rng(0)
    renderer_for = {
        s: KerasCVRenderer.from_models(
            models, width=args.size, height=args.size, steps=s, weights="random", batch_size=args.batch
        )
        for s in args.steps
    }
    encodings = renderer_for[args.steps[0]].encode_text(["a photograph of a dog", "a bowl of fruit"])["context"]
    encodings = encodings[np.arange(frames) % 2]
    noise = rng.standard_normal((frames, args.size // 8, args.size // 8, 4), dtype=np.float32)

    def reference(steps: int) -> np.ndarray:
        out = [
            sd.generate_image(
                encodings[i : i + args.batch],
                batch_size=args.batch,
                num_steps=steps,
                diffusion_noise=noise[i : i + args.batch],
            )
            for i in range(0, frames, args.batch)
        ]
        return np.concatenate(out)

    reference(1)  # traces KerasCV's predict functions for this batch shape
    for steps in args.steps:
        renderer = renderer_for[steps]
        renderer.warm_up()
        t0 = time.perf_counter()
        ref = reference(steps)
        t_ref = (time.perf_counter() - t0) / frames
        t0 = time.perf_counter()
        ours = renderer.render(encodings, noise)
        t_ours = (time.perf_counter() - t0) / frames
        diff = np.abs(ours.astype(int) - ref.astype(int)).max()
        print(
            f"steps {steps:3d}: generate_image {t_ref:7.2f} s/frame | raywalk {t_ours:7.2f} s/frame | "
            f"speed-up {t_ref / t_ours:.2f}x | max pixel diff {diff} | {renderer.info}",
            flush=True,
        )


if __name__ == "__main__":
    main()
