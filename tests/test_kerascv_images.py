"""The KerasCV renderer starting frames from pictures: its VAE encoder, DDIM from a starting step against a
written-out reference, and the image encoder's weight file (random weights, 128x128, 3 steps; the session's
sub-models)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from raywalk.renderers.contract import RendererError
from raywalk.renderers.kerascv.renderer import KerasCVRenderer
from raywalk.renderers.weights import IMAGE_ENCODER, VOCAB, WEIGHT_FILES, needed_files, verify_weights

SIZE, STEPS, GUIDANCE = 128, 3, 7.5
PROMPTS = ["an oil painting of a harbour at dusk", "a bowl of fruit on a table"]
LATENT = (SIZE // 8, SIZE // 8, 4)


def renderer(models, **kwargs) -> KerasCVRenderer:
    # xla=False: the references below are eager, also on GPU hosts (where "auto" is XLA).
    settings = dict(width=SIZE, height=SIZE, steps=STEPS, weights="random", batch_size=2, xla=False) | kwargs
    return KerasCVRenderer.from_models(models, **settings)


def pictures() -> np.ndarray:
    """Two uint8 pictures: a colour gradient and a checkerboard."""
    ramp = np.linspace(0, 255, SIZE).astype(np.uint8)
    gradient = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1, None]), axis=-1)
    squares = ((np.indices((SIZE, SIZE)) // 16).sum(axis=0) % 2 * 255).astype(np.uint8)
    return np.stack([gradient, np.repeat(squares[..., None], 3, axis=-1)])


@pytest.fixture(scope="module")
def picture_walk(sd_models):
    """A separate-passes renderer (the exact one), its encodings of PROMPTS and of `pictures()`, noise, and
    its frames of those prompts and noise rendered without starts."""
    from raywalk.renderers.kerascv import api as kerascv_api

    r = renderer(sd_models, joint_guidance=False)
    contexts = r.encode_text(PROMPTS)["context"]
    noise = np.random.default_rng(20).standard_normal((2, *LATENT), dtype=np.float32)
    return types.SimpleNamespace(
        renderer=r,
        todays_frames=r.render(contexts, noise),  # rendered without starts
        sd=kerascv_api.reference_model("v1.4", SIZE, SIZE, sd_models, licence=False),
        pictures=pictures(),
        latents=r.encode_images(pictures()),
        contexts=contexts,
        noise=noise,
    )


def to_uint8(decoded: np.ndarray) -> np.ndarray:
    """generate_image's (and the renderer's) decoder output to pixels."""
    return np.clip(((decoded + 1) / 2) * 255, 0, 255).astype("uint8")


def ddim_from_picture(models, sd, contexts, noise, z, k: int, steps: int = STEPS) -> np.ndarray:
    """The keras.io tutorial's DDIM with classifier-free guidance, written out, started at step k from the
    picture latents z: noised to the timestep of step k, then denoised over the remaining steps, decoded."""
    from raywalk.renderers.kerascv import api as kerascv_api

    timesteps = np.round(np.arange(steps) * ((1000 - 1) / (steps - 1))).astype(np.int64)
    alpha_bar = kerascv_api.initial_alphas(sd, timesteps)[0][::-1] + [1.0]  # noisiest first; 1.0: no noise left
    timesteps = timesteps[::-1]
    latent = math.sqrt(alpha_bar[k]) * z + math.sqrt(1 - alpha_bar[k]) * noise
    unconditional = np.repeat(kerascv_api.unconditional_context(sd), len(z), axis=0)
    for i in range(k, steps):
        t_emb = kerascv_api.timestep_embedding(sd, timesteps[i], len(z))
        eps_uncond, eps_cond = (
            models.diffusion_model.predict_on_batch({"latent": latent, "timestep_embedding": t_emb, "context": c})
            for c in (unconditional, contexts)
        )
        eps = eps_uncond + GUIDANCE * (eps_cond - eps_uncond)
        pred_x0 = (latent - math.sqrt(1 - alpha_bar[i]) * eps) / math.sqrt(alpha_bar[i])
        latent = math.sqrt(1 - alpha_bar[i + 1]) * eps + math.sqrt(alpha_bar[i + 1]) * pred_x0
    return to_uint8(models.decoder.predict_on_batch(latent))


# ----------------------------------------------------------------------------- the VAE encoder


@pytest.mark.large
def test_encode_images_is_the_vae_encoders_mean_of_each_picture_alone(picture_walk):
    import keras

    from raywalk.renderers.kerascv.models import build_image_encoder

    z = picture_walk.latents
    assert z.dtype == np.float32 and z.shape == (2, *LATENT)
    encoder = build_image_encoder("v1.4", "random")  # seeded: the renderer's own weights again
    moments = keras.Model(encoder.inputs, encoder.layers[-2].output)  # (mean, log-variance) before the scaling
    for picture, latent in zip(picture_walk.pictures, z):
        scaled = picture[None].astype(np.float32) / 127.5 - 1.0
        mean = np.asarray(moments([scaled], training=False))[0, ..., :4]  # called as the renderer calls it: eagerly
        np.testing.assert_array_equal(latent, mean * np.float32(0.18215))
    np.testing.assert_array_equal(picture_walk.renderer.encode_images(picture_walk.pictures[1:]), z[1:])
    assert picture_walk.renderer.encode_images(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, *LATENT)


@pytest.mark.large
def test_encode_images_refuses_pictures_of_another_size_or_type(sd_models):
    r = renderer(sd_models, steps=1)
    with pytest.raises(RendererError, match=r"^encode_images needs uint8 pictures \(M, 128, 128, 3\), got uint8"):
        r.encode_images(np.zeros((1, 64, SIZE, 3), np.uint8))
    with pytest.raises(RendererError, match="got float32 "):
        r.encode_images(np.zeros((1, SIZE, SIZE, 3), np.float32))


@pytest.mark.large
def test_the_encoder_is_built_only_for_pictures(sd_models, tmp_path):
    # A weights directory without the encoder's file: text frames render; the first picture is refused.
    r = renderer(sd_models, steps=1, batch_size=1, weights=str(tmp_path))
    r.render(np.zeros((1, 77, 768), np.float32), np.zeros((1, *LATENT), np.float32))
    with pytest.raises(RendererError) as info:
        r.encode_images(pictures()[:1])
    assert str(info.value) == (
        f"weights directory {str(tmp_path)!r} (v1.4): vae_encoder.h5 is missing;"
        f" stage it with `raywalk weights stage {tmp_path} --version v1.4`"
    )
    (tmp_path / IMAGE_ENCODER.name).write_bytes(b"fake")
    with pytest.raises(RendererError, match="vae_encoder.h5 has the wrong SHA-256"):
        r.encode_images(pictures()[:1])


def test_the_image_encoder_is_staged_but_checked_only_for_picture_jobs(tmp_path, clip_vocab, monkeypatch):
    for version in ("v1.4", "v2.1"):
        assert IMAGE_ENCODER in WEIGHT_FILES[version]  # `raywalk weights stage` fetches it
        assert IMAGE_ENCODER not in needed_files(version) and IMAGE_ENCODER in needed_files(version, pictures=True)
    monkeypatch.setitem(WEIGHT_FILES, "v1.4", (VOCAB, IMAGE_ENCODER))
    (tmp_path / VOCAB.name).write_bytes(clip_vocab.read_bytes())
    assert verify_weights(tmp_path, "v1.4") == {VOCAB.name: tmp_path / VOCAB.name}  # staged before image jobs
    with pytest.raises(RendererError, match="vae_encoder.h5 is missing"):
        verify_weights(tmp_path, "v1.4", needed_files("v1.4", pictures=True))


# ----------------------------------------------------------------------------- DDIM from a starting step


@pytest.mark.large
def test_a_frame_started_from_a_picture_is_the_written_out_ddim(sd_models, picture_walk):
    # Separate guidance passes: the same UNet calls at the same batch shape as the reference, identical bytes.
    w = picture_walk
    images = w.renderer.render(w.contexts, w.noise, w.latents, np.array([1, 1]))
    expected = ddim_from_picture(sd_models, w.sd, w.contexts, w.noise, w.latents, k=1)
    np.testing.assert_array_equal(images, expected)


@pytest.mark.large
def test_joint_guidance_from_a_picture_is_the_written_out_ddim_within_one_level(sd_models, picture_walk):
    # One UNet call of twice the batch rounds float32 sums differently (see test_kerascv.py): at most 1 level.
    w = picture_walk
    images = renderer(sd_models).render(w.contexts, w.noise, w.latents, np.array([2, 2]))
    diff = np.abs(images.astype(int) - ddim_from_picture(sd_models, w.sd, w.contexts, w.noise, w.latents, k=2))
    assert diff.max() <= 1 and np.count_nonzero(diff) / diff.size < 1e-3


@pytest.mark.large
def test_start_step_zero_is_todays_frame_byte_for_byte(picture_walk):
    w = picture_walk
    images = w.renderer.render({"context": w.contexts}, w.noise, w.latents, [0, 0])
    np.testing.assert_array_equal(images, w.todays_frames)


@pytest.mark.large
def test_strength_zero_is_the_vae_round_trip(sd_models, picture_walk):
    w = picture_walk
    images = w.renderer.render(w.contexts, w.noise, w.latents, np.array([STEPS, STEPS]))
    np.testing.assert_array_equal(images, to_uint8(sd_models.decoder.predict_on_batch(w.latents)))
    assert np.abs(images.astype(int) - w.pictures.astype(int)).mean() > 10  # random weights: not the picture


@pytest.mark.large
def test_a_batch_mixing_start_steps_equals_its_frames_one_by_one(picture_walk):
    w, r = picture_walk, picture_walk.renderer
    rows, steps = np.array([0, 1, 0, 1]), np.array([2, 0, STEPS, 2])
    images = r.render(w.contexts[rows], w.noise[rows], w.latents[rows], steps)
    np.testing.assert_array_equal(images[1], w.todays_frames[1])  # start step 0: today's frame
    for i in (0, 2, 3):
        alone = r.render(w.contexts[rows[[i]]], w.noise[rows[[i]]], w.latents[rows[[i]]], steps[[i]])
        np.testing.assert_array_equal(images[i], alone[0], err_msg=f"frame {i} (start step {steps[i]})")
    assert r._step.experimental_get_tracing_count() == 1  # every group padded to one batch shape


@pytest.mark.large
def test_render_refuses_starts_it_cannot_use(sd_models):
    r = renderer(sd_models, steps=1)
    contexts, noise = np.zeros((2, 77, 768), np.float32), np.zeros((2, *LATENT), np.float32)
    with pytest.raises(RendererError, match="^render needs start_latents and start_steps together, or neither$"):
        r.render(contexts, noise, start_latents=noise)
    with pytest.raises(RendererError, match=r"^render's start_steps must lie in \[0, 1\], got 0 to 2$"):
        r.render(contexts, noise, noise, np.array([0, 2]))
    with pytest.raises(RendererError, match=r"needs start_latents \(2, 16, 16, 4\) and integer start_steps \(2,\)"):
        r.render(contexts, noise, noise[:1], np.array([0, 1]))
    with pytest.raises(RendererError, match=r"and float64 \(2,\)$"):
        r.render(contexts, noise, noise, np.array([0.0, 1.0]))
