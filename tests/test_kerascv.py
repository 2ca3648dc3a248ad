"""The KerasCV renderer on the real models (random weights, 128x128, few steps) and the offline weight files."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raywalk.core.job import Model
from raywalk.exec.worker import encode_png
from raywalk.renderers import weights
from raywalk.renderers.contract import RendererError, check_renderer, renderer_kwargs
from raywalk.renderers.kerascv import renderer as kerascv_renderer
from raywalk.renderers.kerascv.models import SubModels
from raywalk.renderers.kerascv.renderer import KerasCVRenderer
from raywalk.renderers.weights import VOCAB, WEIGHT_FILES, stage_weights, verify_weights

import builders

SIZE, STEPS = 128, 3
PROMPTS = ["a photograph of a dog", "a bowl of fruit on a table"]
LONG_PROMPT = "a very " * 40 + "long prompt"  # 84 CLIP tokens with start and end


def model(weights="random", **options) -> Model:
    return builders.model(
        "raywalk.kerascv:KerasCVRenderer", weights, width=SIZE, height=SIZE, steps=STEPS, options=options
    )


def renderer(models, **kwargs) -> KerasCVRenderer:
    # xla=False: the exactness tests compare with KerasCV's eager sampler, also on GPU hosts (where "auto" is XLA).
    settings = dict(width=SIZE, height=SIZE, steps=STEPS, weights="random", batch_size=2, xla=False) | kwargs
    return KerasCVRenderer.from_models(models, **settings)


@pytest.fixture(scope="module")
def reference(sd_models):
    """KerasCV's StableDiffusion on the same sub-models, its images for PROMPTS, and the inputs used."""
    from raywalk.renderers.kerascv import api as kerascv_api

    sd = kerascv_api.reference_model("v1.4", SIZE, SIZE, sd_models, licence=False)
    encodings = np.concatenate([np.asarray(sd.encode_text(p), np.float32) for p in PROMPTS])
    noise = np.random.default_rng(7).standard_normal((2, SIZE // 8, SIZE // 8, 4), dtype=np.float32)
    images = sd.generate_image(encodings, batch_size=2, num_steps=STEPS, diffusion_noise=noise)
    return types.SimpleNamespace(sd=sd, encodings=encodings, noise=noise, images=images)


@pytest.fixture
def empty_keras_home(tmp_path, monkeypatch):
    """A KERAS_HOME whose download cache holds nothing."""
    (tmp_path / "keras-home" / "datasets").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "keras-home" / "datasets"


# ----------------------------------------------------------------------------- plan-time checks


def test_check_prompts_refuses_an_over_long_prompt_naming_it(monkeypatch):
    monkeypatch.setattr(kerascv_renderer, "build_models", None)  # a model build would fail loudly
    assert check_renderer(model(), PROMPTS) == []
    with pytest.raises(RendererError) as info:
        check_renderer(model(), [PROMPTS[0], LONG_PROMPT])
    assert str(info.value) == (
        "prompt 'a very a very a very a very a very a very a very a very a...' is 84 CLIP tokens long;"
        " Stable Diffusion takes at most 77 (start and end tokens included)"
    )


def test_check_prompts_covers_the_negative_prompt_and_option_values():
    with pytest.raises(RendererError, match="is 84 CLIP tokens long"):
        check_renderer(model(negative_prompt=LONG_PROMPT), PROMPTS)
    with pytest.raises(RendererError, match="option version must be one of v1.4, v2.1, got 'v3'"):
        check_renderer(model(version="v3"), PROMPTS)
    with pytest.raises(RendererError, match="does not take option 'sampler'"):
        check_renderer(model(sampler="euler"), PROMPTS)


def test_check_prompts_reads_the_vocabulary_of_a_weights_directory(tmp_path, clip_vocab, empty_keras_home):
    shutil.copy(clip_vocab, tmp_path / clip_vocab.name)
    KerasCVRenderer.check_prompts(PROMPTS, **renderer_kwargs(model(tmp_path)))
    (tmp_path / clip_vocab.name).write_bytes(b"not a vocabulary")
    with pytest.raises(RendererError, match="bpe_simple_vocab_16e6.txt.gz has the wrong SHA-256"):
        KerasCVRenderer.check_prompts(PROMPTS, **renderer_kwargs(model(tmp_path)))


def test_without_a_vocabulary_check_prompts_says_where_to_copy_it(tmp_path, empty_keras_home, monkeypatch):
    monkeypatch.setattr(weights, "VOCAB", dataclasses.replace(VOCAB, url=(tmp_path / "nowhere").as_uri()))
    with pytest.raises(RendererError) as info:
        check_renderer(model(), PROMPTS)
    message = str(info.value)
    assert message.startswith("cannot download bpe_simple_vocab_16e6.txt.gz from file:")
    assert f"copy bpe_simple_vocab_16e6.txt.gz (SHA-256 924691ac288e...) into {empty_keras_home}" in message
    assert "\n" not in message


def test_a_weights_directory_elsewhere_is_a_note_here_and_refused_on_a_worker(tmp_path):
    elsewhere = tmp_path / "cluster-share" / "sd14"
    assert check_renderer(model(elsewhere), PROMPTS) == [
        f"weights directory {str(elsewhere)!r} is not on this machine; render checks it on the workers"
    ]
    with pytest.raises(RendererError, match=f"^weights directory {str(elsewhere)!r} is not on this machine$"):
        check_renderer(model(elsewhere), PROMPTS, strict=True)


def test_on_a_worker_a_missing_weights_directory_is_named_before_the_vocabulary_it_holds(
    tmp_path, empty_keras_home, monkeypatch
):
    monkeypatch.setattr(weights, "VOCAB", dataclasses.replace(VOCAB, url=(tmp_path / "nowhere").as_uri()))
    elsewhere = tmp_path / "cluster-share"
    with pytest.raises(RendererError, match="^weights directory .* is not on this machine$"):
        check_renderer(model(elsewhere), PROMPTS, strict=True)
    with pytest.raises(RendererError, match="^cannot download bpe_simple_vocab_16e6.txt.gz"):
        check_renderer(model(elsewhere), PROMPTS)  # here: nothing to count the prompts' tokens with


def test_a_weights_directory_here_has_every_file_checked(tmp_path, clip_vocab):
    fake_weights(tmp_path, clip_vocab, skip=("kcv_decoder.h5",))
    with pytest.raises(RendererError) as info:
        check_renderer(model(tmp_path), PROMPTS)
    message = str(info.value)
    assert "kcv_decoder.h5 is missing" in message and "kcv_encoder.h5 has the wrong SHA-256" in message
    assert f"raywalk weights stage {tmp_path} --version v1.4" in message


def test_download_without_cached_weights_probes_the_host(empty_keras_home, clip_vocab, monkeypatch):
    shutil.copy(clip_vocab, empty_keras_home / clip_vocab.name)
    probed = []
    monkeypatch.setattr(weights, "unreachable", lambda host: probed.append(host) or "no route to host")
    note = (
        "weights: download needs huggingface.co, which this machine cannot reach (no route to host); for a"
        " cluster without internet, run `raywalk weights stage DIR` on a machine with internet, then set"
        " `weights: DIR`"
    )
    assert check_renderer(model("download"), PROMPTS) == [note + "; render checks it on the workers"]
    with pytest.raises(RendererError) as info:
        check_renderer(model("download"), PROMPTS, strict=True)
    assert str(info.value) == note
    assert probed == ["huggingface.co", "huggingface.co"]

    for file in WEIGHT_FILES["v1.4"]:  # all in KerasCV's cache: nothing to download, no probe
        (empty_keras_home / file.name).touch()
    assert check_renderer(model("download"), PROMPTS, strict=True) == []
    assert check_renderer(model("random"), PROMPTS, strict=True) == []
    assert len(probed) == 2


def test_the_probe_answers_within_its_timeout(monkeypatch):
    from raywalk.renderers import weights

    monkeypatch.setattr(weights, "PROBE_TIMEOUT_S", 0.5)
    assert weights.unreachable("invalid.") is not None  # a name that never resolves


# ----------------------------------------------------------------------------- weight files


def fake_weights(directory, clip_vocab, skip=(), corrupt=()):
    """A weights directory of tiny fake .h5 files (wrong hashes) plus the real vocabulary."""
    for file in WEIGHT_FILES["v1.4"]:
        if file.name in skip:
            continue
        if file.name == clip_vocab.name and file.name not in corrupt:
            shutil.copy(clip_vocab, directory / file.name)
        else:
            (directory / file.name).write_bytes(b"fake")


def test_weights_directory_with_a_missing_file_is_refused_before_building(tmp_path, clip_vocab, monkeypatch):
    from raywalk.renderers.kerascv import api as kerascv_api

    monkeypatch.setattr(kerascv_api, "sub_model_classes", None)  # a model build would fail loudly
    fake_weights(tmp_path, clip_vocab, skip=("kcv_decoder.h5",))
    with pytest.raises(RendererError) as info:
        KerasCVRenderer(width=SIZE, height=SIZE, weights=str(tmp_path))
    message = str(info.value)
    assert "kcv_decoder.h5 is missing" in message
    assert "kcv_encoder.h5 has the wrong SHA-256" in message
    assert "bpe_simple_vocab" not in message
    assert f"raywalk weights stage {tmp_path} --version v1.4" in message and "\n" not in message


def test_weights_directory_with_a_wrong_file_names_it(tmp_path, clip_vocab):
    fake_weights(tmp_path, clip_vocab, corrupt=(clip_vocab.name,))
    with pytest.raises(RendererError, match="bpe_simple_vocab_16e6.txt.gz has the wrong SHA-256"):
        verify_weights(tmp_path, "v1.4")
    with pytest.raises(RendererError, match="does not exist"):
        verify_weights(tmp_path / "nowhere", "v1.4")


def test_stage_weights_copies_from_the_keras_cache_or_downloads_and_verifies(tmp_path, clip_vocab, monkeypatch):
    assert VOCAB in WEIGHT_FILES["v1.4"] and VOCAB in WEIGHT_FILES["v2.1"]  # staging fetches the vocabulary too
    monkeypatch.setitem(WEIGHT_FILES, "v1.4", (VOCAB,))
    staged = stage_weights(tmp_path / "from-cache", "v1.4", progress=False)  # conftest's KERAS_HOME has it
    assert staged == [tmp_path / "from-cache" / clip_vocab.name]
    assert verify_weights(tmp_path / "from-cache", "v1.4") == {clip_vocab.name: staged[0]}

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    (tmp_path / "empty-keras-home").mkdir()
    offline_url = dataclasses.replace(VOCAB, url=clip_vocab.as_uri())
    monkeypatch.setitem(WEIGHT_FILES, "v1.4", (offline_url,))
    target = tmp_path / "downloaded"
    target.mkdir()
    (target / clip_vocab.name).write_bytes(b"partial download")
    assert stage_weights(target, "v1.4", progress=False) == [target / clip_vocab.name]
    assert (target / clip_vocab.name).read_bytes() == clip_vocab.read_bytes()
    assert sorted(p.name for p in target.iterdir()) == [clip_vocab.name]  # no partial file left

    bad_url = dataclasses.replace(VOCAB, url=(target / "nothing").as_uri())
    monkeypatch.setitem(WEIGHT_FILES, "v1.4", (bad_url,))
    with pytest.raises(RendererError) as info:
        stage_weights(tmp_path / "fails", "v1.4", progress=False)
    message = str(info.value)
    assert message.startswith("cannot download bpe_simple_vocab_16e6.txt.gz from file:")
    assert (
        f"copy bpe_simple_vocab_16e6.txt.gz (SHA-256 924691ac288e...) into {tmp_path / 'fails'} or"
        f" {tmp_path / 'empty-keras-home' / 'datasets'}"
    ) in message
    assert "\n" not in message


def test_the_stage_command_stages_the_vocabulary(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from raywalk.cli import main

    monkeypatch.setitem(WEIGHT_FILES, "v1.4", (VOCAB,))
    result = CliRunner().invoke(main, ["weights", "stage", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert verify_weights(tmp_path / "w", "v1.4")


# ----------------------------------------------------------------------------- the KerasCV adapter


def test_another_keras_cv_version_is_refused_in_one_line():
    from raywalk.renderers.kerascv import api as kerascv_api

    kerascv_api.check_version("0.9.0")
    with pytest.raises(RendererError) as info:
        kerascv_api.check_version("0.10.1")
    assert str(info.value) == (
        "keras-cv 0.10.1 is installed; raywalk's KerasCV renderer uses KerasCV's private API and works only"
        " with keras-cv==0.9.0 (pip install keras-cv==0.9.0)"
    )


def test_the_licence_is_printed_only_for_real_weights(capsys):
    from raywalk.renderers.kerascv import api as kerascv_api

    parts = SubModels(text_encoder="t", diffusion_model="u", decoder="d", tokenizer="k")
    sd = kerascv_api.reference_model("v1.4", SIZE, SIZE, parts, licence=False)
    assert capsys.readouterr().out == ""
    assert (sd.text_encoder, sd.diffusion_model, sd.decoder, sd.tokenizer) == ("t", "u", "d", "k")
    assert (sd.img_height, sd.img_width, sd.jit_compile) == (SIZE, SIZE, False)
    kerascv_api.reference_model("v2.1", SIZE, SIZE, parts, licence=True)
    assert "CreativeML Open RAIL++-M" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the real models


@pytest.mark.large
def test_encode_text_is_kerascv_encode_text_squeezed(sd_models, reference):
    r = renderer(sd_models)
    encodings = r.encode_text(PROMPTS)
    assert list(encodings) == ["context"]
    assert encodings["context"].shape == (2, 77, 768) and encodings["context"].dtype == np.float32
    np.testing.assert_array_equal(encodings["context"], reference.encodings)
    assert r.encode_text([])["context"].shape == (0, 77, 768)
    with pytest.raises(RendererError, match="is 84 CLIP tokens long"):
        r.encode_text([LONG_PROMPT])


@pytest.mark.large
def test_separate_guidance_passes_equal_generate_image_exactly(sd_models, reference):
    # The same UNet calls at the same batch shapes and the same float32 arithmetic: identical bytes.
    images = renderer(sd_models, joint_guidance=False).render(reference.encodings, reference.noise)
    assert images.dtype == np.uint8 and images.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(images, reference.images)


@pytest.mark.large
def test_joint_guidance_equals_generate_image_within_one_level(sd_models, reference):
    # One UNet call on a batch of 4 instead of two of 2: oneDNN blocks the convolutions differently
    # by batch size, so float32 sums round differently (~1e-6 relative). After 3 steps and the decoder
    # that moves a handful of pixels across a uint8 rounding boundary: at most 1 level, on < 0.1 %.
    r = renderer(sd_models)
    assert r.info["joint_guidance"] is True
    diff = np.abs(r.render(reference.encodings, reference.noise).astype(int) - reference.images.astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) / diff.size < 1e-3


@pytest.mark.large
def test_batches_are_padded_to_one_shape_and_frames_do_not_depend_on_their_batch(sd_models, reference):
    r = renderer(sd_models, steps=1)
    encodings = reference.encodings[[0, 1, 0]]
    noise = reference.noise[[0, 1, 1]]
    images = r.render(encodings, noise)
    assert images.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_array_equal(r.render(encodings[2:], noise[2:]), images[2:])
    assert r._step.experimental_get_tracing_count() == 1  # one compiled step for every batch


@pytest.mark.large
def test_negative_prompt_is_generate_image_negative_prompt(sd_models, reference):
    r = renderer(sd_models, steps=1, joint_guidance=False, negative_prompt="blurry, low quality")
    expected = reference.sd.generate_image(
        reference.encodings,
        batch_size=2,
        num_steps=1,
        diffusion_noise=reference.noise,
        negative_prompt="blurry, low quality",
    )
    np.testing.assert_array_equal(r.render(reference.encodings, reference.noise), expected)


@pytest.mark.large
def test_random_weights_are_recorded(sd_models):
    r = renderer(sd_models)
    assert r.random_weights is True
    assert r.latent_shape == (16, 16, 4)
    assert r.info == {
        "renderer": "kerascv",
        "version": "v1.4",
        "weights": "random",
        "random_weights": True,
        "precision": "float32",
        "xla": False,
        "joint_guidance": True,
    }


GOLDEN = Path(__file__).parent / "data" / "kerascv_golden.json"


@pytest.fixture(scope="module")
def golden_render(sd_models):
    """The golden cases rendered now (tests/kerascv_golden.py): their digests and format-2 PNGs."""
    from kerascv_golden import MODEL, render_cases

    return render_cases(KerasCVRenderer.from_models(sd_models, **MODEL, xla=False, joint_guidance=True))


@pytest.mark.large
def test_kerascv_jobs_keep_their_bytes(golden_render):
    """Frames of four walks rendered now have the digests recorded with the locked stack (random weights,
    128x128, 2 steps; see tests/kerascv_golden.py); where they differ, the message names the packages whose
    installed versions are not the recorded ones."""
    from kerascv_golden import stack_difference

    golden = json.loads(GOLDEN.read_text())
    assert golden_render[0] == golden["cases"], stack_difference(golden["stack"])


@pytest.mark.large
def test_frame_texts_left_the_pixels_as_they_were(golden_render):
    """The recorded pixel digests are those of the images behind the format-1 PNGs (the digests from before
    frame texts), and each format-2 PNG rendered now decodes to exactly those pixels."""
    golden = json.loads(GOLDEN.read_text())["cases"]
    for name, frames in golden.items():
        for recorded in frames:
            png = golden_render[1][f"{name}/{recorded['frame']}"]
            pixels = np.asarray(Image.open(io.BytesIO(png)))
            assert hashlib.sha256(pixels.tobytes()).hexdigest() == recorded["pixels"], (name, recorded["frame"])
            assert hashlib.sha256(encode_png(pixels)).hexdigest() == recorded["png_format1"]
            assert "parameters" in Image.open(io.BytesIO(png)).text


def test_a_golden_digest_mismatch_names_the_packages_that_differ():
    from kerascv_golden import stack, stack_difference

    installed = stack()
    assert "the code changed the numbers" in stack_difference(installed)
    assert f"numpy {installed['numpy']}" in stack_difference(installed)
    older = {**installed, "numpy": "1.26.4", "keras-cv": "0.8.2"}
    message = stack_difference(older)
    assert message == (
        "the installed stack is not the one the golden digests were made with: "
        f"keras-cv {installed['keras-cv']} (digests made with 0.8.2), numpy {installed['numpy']} "
        "(digests made with 1.26.4)"
    )
    without_keras = {k: v for k, v in installed.items() if k != "keras"}
    assert stack_difference(without_keras).endswith(f"keras {installed['keras']} (digests made with absent)")
