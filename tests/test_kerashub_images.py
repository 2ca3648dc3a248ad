"""Frames of the KerasHub Stable Diffusion 3 renderer that start from pictures, on the tiny configuration
(random weights, 64x64, 3 steps), against KerasHub's own `StableDiffusion3ImageToImage.generate` on the same
backbone, byte for byte.

Runs on the suite's Keras backend in this process, and on every other backend installed here (jax in the
locked test environment; torch where installed) in a subprocess that runs this file again.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from raywalk.renderers.contract import RendererError
from raywalk.renderers.sd3 import backends
from raywalk.renderers.sd3.image_start import unit_range
from raywalk.renderers.sd3.sampler import generate_uint8

from builders import SD3_SIZE, SD3_STEPS, tiny_sd3_renderer

SIZE, STEPS, SEED = SD3_SIZE, SD3_STEPS, 42
PROMPTS = ["a photograph of a dog", "a bowl of fruit"]
# KerasHub's starting step int(steps * (1 - strength)) at 3 steps: 0 (text to image), 1, 2 and 3 (no denoising)
STRENGTHS = {1.0: 0, 0.5: 1, 0.2: 2, 0.0: 3}


def make_pictures() -> np.ndarray:
    """Two uint8 64x64 pictures with structure: colour gradients, and a disc on the second."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    first = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1) % 256
    second = np.where(((x - 30) ** 2 + (y - 24) ** 2 < 300)[..., None], [250, 200, 40], 255 - first)
    return np.stack([first, second]).astype(np.uint8)


PICTURES = make_pictures()


@pytest.fixture(scope="module")
def reference(tiny_sd3):
    """KerasHub's StableDiffusion3ImageToImage on the same backbone: `generate` of PICTURES and PROMPTS, and
    the noise it draws."""
    import keras
    import keras_hub

    i2i = keras_hub.models.StableDiffusion3ImageToImage(backbone=tiny_sd3.backbone, preprocessor=tiny_sd3.preprocessor)

    def generate(strength: float, guidance_scale: float) -> np.ndarray:
        i2i.compile()  # a fresh compiled function: see test_kerashub.py's reference fixture
        inputs = {"images": unit_range(PICTURES), "prompts": list(PROMPTS)}
        return i2i.generate(inputs, num_steps=STEPS, strength=strength, guidance_scale=guidance_scale, seed=SEED)

    # generate's noise: keras.random.normal of the batch's latent shape with the same seed
    noise = keras.random.normal((len(PROMPTS), SIZE // 8, SIZE // 8, 16), dtype="float32", seed=SEED)
    return types.SimpleNamespace(generate=generate, noise=np.asarray(keras.ops.convert_to_numpy(noise)))


def test_encode_images_gives_the_vae_mean_batch_by_batch(tiny_sd3):
    from keras import ops

    r = tiny_sd3_renderer(tiny_sd3)
    latents = r.encode_images(PICTURES)
    assert latents.dtype == np.float32 and latents.shape == (2, SIZE // 8, SIZE // 8, 16)
    # the tiny VAE samples by its mean ("mode"): KerasHub's own VAE encoding, compiled, is the same
    vae = backends.compile_for_backend(tiny_sd3.backbone.vae.encode, tiny_sd3.backbone, False)
    np.testing.assert_array_equal(latents, ops.convert_to_numpy(vae(ops.convert_to_tensor(unit_range(PICTURES)))))
    three = r.encode_images(PICTURES[[1, 0, 1]])  # two calls, the second padded
    np.testing.assert_array_equal(three, latents[[1, 0, 1]])
    assert r.encode_images(PICTURES[:0]).shape == (0, SIZE // 8, SIZE // 8, 16)
    with pytest.raises(
        RendererError, match=r"encode_images needs uint8 \(M, 64, 64, 3\), got float32 \(2, 64, 64, 3\)"
    ):
        r.encode_images(PICTURES.astype(np.float32))
    with pytest.raises(RendererError, match=r"got uint8 \(64, 64, 3\)"):
        r.encode_images(PICTURES[0])


def test_a_vae_that_samples_still_gives_the_mean(tiny_sd3):
    from keras import ops

    # KerasHub's presets sample their VAE ("sample", unseeded): a walk's frames must not depend on a draw.
    sampler = tiny_sd3.backbone.vae.distribution_sampler
    mean = tiny_sd3_renderer(tiny_sd3).encode_images(PICTURES)
    sampler.method = "sample"
    try:
        draws = [ops.convert_to_numpy(tiny_sd3.backbone.vae.encode(unit_range(PICTURES))) for _ in range(2)]
        assert not np.array_equal(draws[0], draws[1])
        np.testing.assert_array_equal(tiny_sd3_renderer(tiny_sd3).encode_images(PICTURES), mean)
    finally:
        sampler.method = "mode"


@pytest.mark.parametrize("guidance_scale", [7.0, 0.0], ids=["guided", "unguided"])
def test_a_frame_from_a_picture_equals_image_to_image_generate(tiny_sd3, reference, guidance_scale):
    # The same KerasHub steps (encode_image_step's VAE mean, add_noise_step, denoise_step from the starting
    # step, decode_step, generate's uint8), with image_rescaling inside the compiled sampler as generate has it.
    r = tiny_sd3_renderer(tiny_sd3, guidance_scale=guidance_scale)
    encodings, latents = r.encode_text(PROMPTS), r.encode_images(PICTURES)
    for strength, step in STRENGTHS.items():
        images = r.render(encodings, reference.noise, latents, np.full(len(PROMPTS), step))
        assert len(np.unique(images)) > 200  # random weights, but not a flat image: the comparison means something
        np.testing.assert_array_equal(images, reference.generate(strength, guidance_scale), err_msg=f"{strength=}")


def test_a_frame_at_step_zero_is_the_frame_without_starts(tiny_sd3, reference):
    r = tiny_sd3_renderer(tiny_sd3)
    encodings = r.encode_text(PROMPTS)
    np.testing.assert_array_equal(
        r.render(encodings, reference.noise, np.ones((2, SIZE // 8, SIZE // 8, 16), np.float32), np.zeros(2, int)),
        r.render(encodings, reference.noise),
    )


def test_strength_zero_is_the_vae_round_trip(tiny_sd3, reference):
    from keras import ops

    r = tiny_sd3_renderer(tiny_sd3)
    images = r.render(r.encode_text(PROMPTS), reference.noise, r.encode_images(PICTURES), np.full(2, STEPS))
    backbone = tiny_sd3.backbone
    round_trip = backends.compile_for_backend(
        lambda x: generate_uint8(backbone.decode_step(backbone.encode_image_step(x))), backbone, False
    )
    np.testing.assert_array_equal(images, ops.convert_to_numpy(round_trip(ops.convert_to_tensor(unit_range(PICTURES)))))


def test_a_batch_mixing_start_steps_equals_its_frames_one_by_one(tiny_sd3, reference):
    import keras

    r = tiny_sd3_renderer(tiny_sd3)
    latents, encodings = r.encode_images(PICTURES), r.encode_text(PROMPTS)
    rows = np.array([0, 1, 1, 0, 1])
    steps = np.array([STEPS, 0, 1, 2, 1])
    frames = {k: v[rows] for k, v in encodings.items()}
    noise = reference.noise[[1, 0, 0, 1, 1]]
    images = r.render(frames, noise, latents[rows], steps)
    assert images.shape == (5, SIZE, SIZE, 3)
    for i in range(5):
        alone = r.render(
            {k: v[i : i + 1] for k, v in frames.items()}, noise[i : i + 1], latents[rows[i : i + 1]], steps[i : i + 1]
        )
        np.testing.assert_array_equal(alone[0], images[i], err_msg=f"frame {i}")
    if keras.config.backend() != "torch":  # PyTorch runs eagerly: nothing is traced
        assert r.traces == 2  # one compiled sampler from step 0, one from every later step


def test_starts_are_checked(tiny_sd3, reference):
    r = tiny_sd3_renderer(tiny_sd3)
    encodings, latents = r.encode_text(PROMPTS), np.zeros((2, SIZE // 8, SIZE // 8, 16), np.float32)
    with pytest.raises(RendererError, match="render needs start_latents and start_steps together, or neither"):
        r.render(encodings, reference.noise, latents)
    with pytest.raises(RendererError, match=r"start_latents \(2, 8, 8, 16\) and integer start_steps \(2,\), got"):
        r.render(encodings, reference.noise, latents[:1], np.zeros(2, int))
    with pytest.raises(RendererError, match=r"got \(2, 8, 8, 16\) and float64 \(2,\)"):
        r.render(encodings, reference.noise, latents, np.zeros(2))
    with pytest.raises(RendererError, match=r"start_steps must be in \[0, 3\], got 0 to 4"):
        r.render(encodings, reference.noise, latents, np.array([0, 4]))


def test_every_other_installed_backend_gives_generates_frames_too():
    import keras

    others = [b for b in ("jax", "tensorflow", "torch") if b != keras.config.backend() and importlib.util.find_spec(b)]
    assert others  # the locked test environment has jax and tensorflow
    for backend in others:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                "-n",
                "0",  # two tests: in this one process, without xdist's workers
                __file__,
                "-k",
                "equals_image_to_image_generate or vae_round_trip",  # the checks against KerasHub's own code
            ],
            env=os.environ | {"KERAS_BACKEND": backend},
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, f"{backend}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
        assert " passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-1000:]
