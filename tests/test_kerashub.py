"""The KerasHub Stable Diffusion 3 renderer on the tiny configuration (random weights, 64x64, 3 steps),
against KerasHub's own `StableDiffusion3TextToImage.generate` on the same backbone; and staged presets.

Runs on whichever Keras backend KERAS_BACKEND names (jax, tensorflow; torch where installed).
"""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest

from raywalk.core.job import Model
from raywalk.renderers.contract import RendererError, check_renderer, load_renderer
from raywalk.renderers.sd3 import renderer as sd3_renderer
from raywalk.renderers.sd3.presets import MANIFEST, stage_preset, verify_preset
from raywalk.renderers.sd3.renderer import StableDiffusion3Renderer

import builders
from builders import SD3_SIZE, SD3_STEPS, tiny_sd3_renderer

SIZE, STEPS, SEED = SD3_SIZE, SD3_STEPS, 42
PROMPTS = ["a photograph of a dog", "a bowl of fruit"]
LONG_PROMPT = "a very long prompt " * 5 + "ok"  # 77 letters: 79 tokens of the tiny, character-level vocabulary


def model(weights="random", **options) -> Model:
    return builders.model(
        "raywalk.kerashub:StableDiffusion3Renderer",
        weights,
        width=SIZE,
        height=SIZE,
        steps=STEPS,
        guidance_scale=7.0,
        options={"config": "tiny"} | options,
    )


@pytest.fixture(scope="module")
def reference(tiny_sd3):
    """KerasHub's StableDiffusion3TextToImage on the same backbone: `generate` and the latents it drew."""
    import keras
    import keras_hub

    t2i = keras_hub.models.StableDiffusion3TextToImage(backbone=tiny_sd3.backbone, preprocessor=tiny_sd3.preprocessor)

    def generate(negative: str = "", guidance_scale: float = 7.0, num_steps: int = STEPS) -> np.ndarray:
        # keras-hub 0.32.0: generate's compiled function keeps the sigmas of the step count it was first
        # traced with (configure_scheduler sets a Python attribute, captured as a constant), so a later
        # call with another num_steps and the same argument structure samples a wrong schedule on jax and
        # tensorflow. compile() drops the compiled function; the renderer fixes its step count per instance.
        t2i.compile()
        inputs = {"prompts": list(PROMPTS), "negative_prompts": [negative] * len(PROMPTS)}
        return t2i.generate(inputs, num_steps=num_steps, guidance_scale=guidance_scale, seed=SEED)

    # generate's own latents: keras.random.normal of the batch's latent shape with the same seed
    latents = keras.random.normal((len(PROMPTS), SIZE // 8, SIZE // 8, 16), dtype="float32", seed=SEED)
    noise = np.asarray(keras.ops.convert_to_numpy(latents))
    return types.SimpleNamespace(generate=generate, images=generate(), noise=noise)


# ----------------------------------------------------------------------------- plan-time checks


def test_check_prompts_refuses_an_over_long_prompt_naming_it_without_building(monkeypatch):
    monkeypatch.setattr(sd3_renderer, "tiny_backbone", None)  # a model build would fail loudly
    monkeypatch.setattr(sd3_renderer, "build_models", None)
    check_renderer(model(), PROMPTS)
    with pytest.raises(RendererError) as info:
        check_renderer(model(), [PROMPTS[0], LONG_PROMPT])
    assert str(info.value) == (
        "prompt 'a very long prompt a very long prompt a very long prompt ...' is 79 CLIP tokens long;"
        " Stable Diffusion 3 takes at most 77 (start and end tokens included)"
    )
    with pytest.raises(RendererError, match="is 79 CLIP tokens long"):
        check_renderer(model(negative_prompt=LONG_PROMPT), PROMPTS)


def test_options_are_checked_at_planning():
    with pytest.raises(RendererError, match=r"option preset must be one of stable_diffusion_3_medium, .*got 'sd4'"):
        check_renderer(model(preset="sd4"), PROMPTS)
    with pytest.raises(RendererError, match="config tiny has no trained weights; set weights: random"):
        check_renderer(model(weights="download"), PROMPTS)
    with pytest.raises(RendererError, match="does not take option 'sampler'"):
        check_renderer(model(sampler="euler"), PROMPTS)
    with pytest.raises(RendererError, match="width must be a positive multiple of 16"):
        StableDiffusion3Renderer.check_prompts(PROMPTS, width=72, config="tiny", weights="random")


def test_a_presets_prompts_are_counted_with_the_clip_vocabulary_when_it_is_here(caplog, monkeypatch, tmp_path):
    # conftest's KERAS_HOME holds OpenAI's CLIP vocabulary, as KerasCV's download cache would
    clip_long = "a very " * 40 + "long prompt"  # 84 CLIP tokens, as KerasCV counts them (tests/test_kerascv.py)
    StableDiffusion3Renderer.check_prompts([LONG_PROMPT], weights="download")
    with pytest.raises(RendererError, match="is 84 CLIP tokens long"):
        StableDiffusion3Renderer.check_prompts([clip_long], weights="download")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    caplog.set_level(logging.INFO, "raywalk.renderers.sd3")
    StableDiffusion3Renderer.check_prompts([clip_long], weights="download")
    assert "prompt lengths not checked at planning" in caplog.text


def test_a_job_for_another_backend_is_refused():
    import keras

    other = "torch" if keras.config.backend() != "torch" else "jax"
    with pytest.raises(RendererError, match=f"asks for Keras backend '{other}', but this process runs"):
        StableDiffusion3Renderer(width=SIZE, height=SIZE, weights="random", config="tiny", backend=other)


# ----------------------------------------------------------------------------- staged presets


def fake_preset(directory):
    """A directory shaped like a KerasHub preset (contents do not matter to the SHA-256 check)."""
    (directory / "assets" / "tokenizer").mkdir(parents=True)
    (directory / "config.json").write_text('{"module": "keras_hub"}')
    (directory / "model.weights.h5").write_bytes(bytes(range(256)) * 64)
    (directory / "assets" / "tokenizer" / "vocabulary.json").write_text('{"a": 0}')
    return directory


def test_stage_preset_copies_a_preset_and_verify_checks_every_file(tmp_path):
    source = fake_preset(tmp_path / "source")
    target = tmp_path / "staged"
    staged = stage_preset(target, str(source))
    names = ["assets/tokenizer/vocabulary.json", "config.json", "model.weights.h5"]
    assert [p.relative_to(target).as_posix() for p in staged] == names
    assert [line.split("  ")[1] for line in (target / MANIFEST).read_text().splitlines()] == names
    assert verify_preset(target) == target
    assert stage_preset(target, "nowhere") == staged  # already staged: kept, nothing fetched

    (target / "model.weights.h5").write_bytes(b"partial")
    (target / "config.json").unlink()
    with pytest.raises(RendererError) as info:
        verify_preset(target)
    assert "config.json is missing; model.weights.h5 has the wrong SHA-256 (corrupt or partial copy)" in str(info.value)
    stage_preset(target, str(source))  # restages what is wrong
    assert verify_preset(target) == target


def test_weights_stage_preset_from_the_command_line(tmp_path):
    from click.testing import CliRunner

    from raywalk.cli import main

    source = fake_preset(tmp_path / "source")
    result = CliRunner().invoke(main, ["weights", "stage", str(tmp_path / "staged"), "--preset", str(source)])
    assert result.exit_code == 0 and f"staged in {tmp_path / 'staged'}" in result.output
    assert verify_preset(tmp_path / "staged") == tmp_path / "staged"
    refused = CliRunner().invoke(main, ["weights", "stage", str(tmp_path / "x"), "--preset", "sd4"])
    assert refused.exit_code == 2 and "unknown Stable Diffusion 3 preset 'sd4'" in refused.stderr


def test_an_unfinished_or_unknown_preset_directory_is_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setattr(sd3_renderer, "tiny_backbone", None)
    unfinished = fake_preset(tmp_path / "unfinished")
    with pytest.raises(RendererError, match=f"has no {MANIFEST} \\(staging never finished\\)"):
        StableDiffusion3Renderer(width=SIZE, height=SIZE, weights=str(unfinished))
    with pytest.raises(RendererError, match="does not exist"):
        verify_preset(tmp_path / "nowhere")
    with pytest.raises(RendererError, match="unknown Stable Diffusion 3 preset 'sd4'"):
        stage_preset(tmp_path / "x", "sd4")


def test_a_staged_preset_is_counted_at_planning_and_loaded_by_the_renderer(tmp_path, tiny_sd3, reference):
    # The tiny model saved as a KerasHub preset stands in for a downloaded one.
    tiny_sd3.backbone.save_to_preset(str(tmp_path / "preset"))
    tiny_sd3.preprocessor.save_to_preset(str(tmp_path / "preset"))
    stage_preset(tmp_path / "staged", str(tmp_path / "preset"))
    staged = model(tmp_path / "staged", config="preset")
    check_renderer(staged, PROMPTS)
    with pytest.raises(RendererError, match="is 79 CLIP tokens long"):
        check_renderer(staged, [LONG_PROMPT])
    loaded = load_renderer(staged)
    assert loaded.random_weights is False and loaded.info["model"] == "stable_diffusion_3_medium"
    np.testing.assert_array_equal(loaded.render(loaded.encode_text(PROMPTS), reference.noise), reference.images)


# ----------------------------------------------------------------------------- the tiny model


def test_encode_text_gives_named_parts(tiny_sd3):
    r = tiny_sd3_renderer(tiny_sd3)
    encodings = r.encode_text(PROMPTS)
    assert {k: (v.shape, v.dtype) for k, v in encodings.items()} == {
        "sequence": ((2, 154, 4096), np.float32),
        "pooled": ((2, 192), np.float32),
    }
    np.testing.assert_array_equal(encodings["sequence"][:, 77:], 0)  # no T5: KerasHub pads 77 tokens
    assert {k: v.shape for k, v in r.encode_text([]).items()} == {"sequence": (0, 154, 4096), "pooled": (0, 192)}
    with pytest.raises(RendererError, match="is 79 CLIP tokens long"):
        r.encode_text([LONG_PROMPT])


def test_render_equals_generate_exactly(tiny_sd3, reference):
    # The same KerasHub functions (encode_text_step, denoise_step in fori_loop, decode_step, generate's
    # uint8 conversion), compiled the same way, at the same batch shapes: identical bytes, measured on
    # jax and tensorflow (CPU). Encoding eagerly instead of compiled would move ~1e-6 and a pixel or two.
    r = tiny_sd3_renderer(tiny_sd3)
    images = r.render(r.encode_text(PROMPTS), reference.noise)
    assert images.dtype == np.uint8 and images.shape == (2, SIZE, SIZE, 3)
    assert len(np.unique(images)) > 200  # random weights, but not a flat image: the comparison means something
    np.testing.assert_array_equal(images, reference.images)


def test_without_guidance_render_equals_generate_exactly(tiny_sd3, reference):
    # The turbo preset's setting: guidance <= 1 runs one MMDiT pass per frame, as generate does.
    r = tiny_sd3_renderer(tiny_sd3, guidance_scale=0.0, steps=2)
    assert r.info["guidance"] == "none"
    expected = reference.generate(guidance_scale=0.0, num_steps=2)
    np.testing.assert_array_equal(r.render(r.encode_text(PROMPTS), reference.noise), expected)


def test_negative_prompt_is_generates_negative_prompts(tiny_sd3, reference):
    r = tiny_sd3_renderer(tiny_sd3, negative_prompt="blurry", steps=1)
    expected = reference.generate(negative="blurry", num_steps=1)
    np.testing.assert_array_equal(r.render(r.encode_text(PROMPTS), reference.noise), expected)


def test_batches_are_padded_to_one_shape_and_frames_do_not_depend_on_their_batch(tiny_sd3, reference):
    import keras

    r = tiny_sd3_renderer(tiny_sd3, steps=1)
    encodings = {k: v[[0, 1, 0]] for k, v in r.encode_text(PROMPTS).items()}
    noise = reference.noise[[0, 1, 1]]
    images = r.render(encodings, noise)
    assert images.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_array_equal(r.render({k: v[2:] for k, v in encodings.items()}, noise[2:]), images[2:])
    if keras.config.backend() != "torch":  # PyTorch runs eagerly: nothing is traced
        assert r.traces == 1  # one compiled sampler for every batch


def test_render_refuses_unnamed_or_misshapen_parts(tiny_sd3, reference):
    r = tiny_sd3_renderer(tiny_sd3, steps=1)
    encodings = r.encode_text(PROMPTS)
    with pytest.raises(RendererError, match="render needs encodings with the parts sequence, pooled, got ndarray"):
        r.render(encodings["sequence"], reference.noise)
    with pytest.raises(RendererError, match="render needs sequence \\(2, 154, 4096\\), pooled \\(2, 192\\) and noise"):
        r.render(encodings, reference.noise[..., :4])


def test_the_constructor_builds_the_same_seeded_random_model(tiny_sd3, reference, caplog):
    caplog.set_level(logging.WARNING, "raywalk.renderers.sd3")
    built = load_renderer(model())
    assert "RANDOM WEIGHTS" in caplog.text
    assert built.random_weights is True and built.latent_shape == (8, 8, 16)
    info = dict(built.info)
    assert (info.pop("backend"), info.pop("keras_hub")) and info == {
        "renderer": "kerashub",
        "model": "tiny",
        "weights": "random",
        "random_weights": True,
        "precision": "float32",
        "xla": False,
        "guidance": "joint",
    }
    np.testing.assert_array_equal(built.render(built.encode_text(PROMPTS), reference.noise), reference.images)


def test_the_benchmark_runs_without_tensorflow_and_matches_generate():
    # A machine with JAX and KerasHub but no TensorFlow (keras-hub's CLIP tokenizer needs a patch there):
    # the bench's --no-tensorflow import hook stands in for it.
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("jax")
    bench = Path(__file__).resolve().parent.parent / "bench" / "sampler_sd3.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--no-tensorflow", "--size", "64", "--steps", "2", "--repeats", "1"],
        env=os.environ | {"KERAS_BACKEND": "jax"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "max pixel diff 0 (0.0000% of values)" in out.stdout
    assert "imported: {'tensorflow': False, 'ray': False, 'keras_cv': False}" in out.stdout


# ---------------------------------------------------------------------------- a walk through Ray


def test_a_tiny_sd3_walk_renders_through_ray(ray_connected, tmp_path):
    """Both parts walked (slerp), 16-channel noise, the renderer's workers started on the Keras backend it
    chose on a worker (JAX where installed): PNGs, index, GIF; resume finds nothing missing."""
    import io
    import json

    import yaml
    from PIL import Image

    from raywalk import load_job
    from raywalk.exec.driver import WorkerSpec, render
    from raywalk.exec.progress import Progress
    from raywalk.run.store import RunStore

    job_file = tmp_path / "sd3.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "name": "sd3-tiny",
                "prompts": ["a dog", "a cat"],
                "walk": {"kind": "interpolate", "frames": 4, "method": "slerp"},
                "model": {
                    "renderer": "raywalk.kerashub:StableDiffusion3Renderer",
                    "width": SIZE,
                    "height": SIZE,
                    "steps": 2,
                    "weights": "random",
                    "batch_size": 2,
                    "options": {"config": "tiny"},
                },
                "chunking": {"chunk_size": 2},
                "workers": {"gpus": 0, "cpus": 1},
                "outputs": {"gif": {"fps": 4}},
            }
        )
    )
    job = load_job(job_file)
    out = tmp_path / "run"
    log = io.StringIO()
    outcome = render(
        job, str(out), workers=WorkerSpec(count=1, gpus=0, cpus=1), progress=Progress(4, 0, log, bar=False)
    )
    assert outcome.complete, log.getvalue()
    store = RunStore(str(out))
    manifest = store.require_manifest()
    expected = StableDiffusion3Renderer.keras_backend()
    assert manifest.renderer["backend"] == expected and manifest.random_weights
    stack = manifest.stack  # what the worker renders with: the backend in use, KerasHub, the dtype policy
    assert stack is not None and stack.backend == expected and stack.precision == manifest.renderer["precision"]
    assert {"raywalk", "keras", "keras-hub"} <= set(stack.packages) and stack.device == "cpu"
    keyframes = store.read_keyframes(manifest.keyframes_sha256)
    assert set(keyframes) == {"sequence", "pooled"} and keyframes["sequence"].shape[0] == 2
    index = store.read_index()
    assert sorted(index["frame"].to_pylist()) == [0, 1, 2, 3] and set(index["t"].to_pylist()) >= {0.0, 1.0}
    images = [np.asarray(Image.open(out / "frames" / f"{i:06d}.png")) for i in range(4)]
    assert all(im.shape == (SIZE, SIZE, 3) for im in images) and not np.array_equal(images[0], images[3])
    assert Image.open(out / "sd3-tiny.gif").n_frames == 4
    assert [json.loads(line)["event"] for line in log.getvalue().splitlines()].count("chunk") == 2
    again = render(job, str(out), workers=WorkerSpec(count=1, gpus=0, cpus=1), progress=Progress(4, 4, log, bar=False))
    assert again.complete and again.rendered == 0
