"""The renderer contract: loading by import path and the one-line errors before any rendering."""

from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import pytest

from raywalk.core.job import Model
from raywalk.errors import BadInputError
from raywalk.renderers.contract import (
    Renderer,
    RendererError,
    Traits,
    check_renderer,
    load_renderer,
    renderer_class,
    renderer_kwargs,
    renderer_traits,
)

import builders


def model(renderer: str = "doubles:FakeRenderer", **options) -> Model:
    """A job's model section."""
    return builders.model(renderer, options=options)


@pytest.fixture
def fake_module(monkeypatch):
    """A throw-away module `fakemod` whose classes tests fill in."""
    module = types.ModuleType("fakemod")
    monkeypatch.setitem(sys.modules, "fakemod", module)
    return module


def one_line_error(call, *args) -> str:
    with pytest.raises(RendererError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_load_renderer_builds_the_class_with_standard_kwargs_and_options():
    renderer = load_renderer(model(dim=16))
    assert isinstance(renderer, Renderer)
    assert renderer.latent_shape == (16, 8, 4)
    enc = renderer.encode_text(["a dog", "a cat"])
    assert enc.shape == (2, 77, 16) and enc.dtype == np.float32
    images = renderer.render(enc, np.zeros((2, 16, 8, 4), np.float32))
    assert images.shape == (2, 128, 64, 3) and images.dtype == np.uint8


def test_renderer_kwargs_merges_options_and_refuses_duplicates():
    assert renderer_kwargs(model(dim=16)) == dict(
        width=64, height=128, steps=2, guidance_scale=7.5, weights="random", precision="auto", batch_size=2, dim=16
    )
    assert "model.options.steps duplicates model.steps" in one_line_error(renderer_kwargs, model(steps=3))


@pytest.mark.parametrize("path", ["doubles", "doubles:", ":FakeRenderer", "doubles.FakeRenderer"])
def test_bad_import_path(path):
    assert "is not an import path 'package.module:Class'" in one_line_error(renderer_class, path)


def test_missing_module():
    assert one_line_error(renderer_class, "no_such_pkg.sub:Thing") == "renderer module 'no_such_pkg.sub' not found"


def test_module_whose_own_import_fails_is_told_apart(fake_module, monkeypatch, tmp_path):
    (tmp_path / "broken_renderer.py").write_text("import not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = one_line_error(renderer_class, "broken_renderer:Thing")
    assert message.startswith("renderer module 'broken_renderer' failed to import")
    assert "not_installed_dependency" in message


def test_missing_class():
    assert one_line_error(renderer_class, "doubles:NoSuchRenderer") == (
        "renderer module 'doubles' has no class 'NoSuchRenderer'"
    )


def test_not_a_class(fake_module):
    fake_module.make = lambda: None
    assert one_line_error(renderer_class, "fakemod:make") == "renderer 'fakemod:make' is not a class"


def test_class_lacking_the_contract(fake_module):
    class HalfRenderer:
        def encode_text(self, prompts):
            return prompts

    fake_module.HalfRenderer = HalfRenderer
    message = one_line_error(renderer_class, "fakemod:HalfRenderer")
    assert message.startswith("renderer 'fakemod:HalfRenderer' lacks render;")


def test_traits_are_read_from_the_class_with_defaults_for_renderers_that_state_none(fake_module):
    assert renderer_traits("raywalk.kerascv:KerasCVRenderer") == Traits("UNet", 4, False)
    assert renderer_traits("raywalk.kerashub:StableDiffusion3Renderer") == Traits("MMDiT", 16, True)
    assert renderer_traits("doubles:FakeRenderer") == Traits()

    class DiT(FakeRendererBase):
        denoiser, latent_channels, guidance_optional = "DiT", 8, True

    class Bad(FakeRendererBase):
        latent_channels = "16"

    fake_module.DiT, fake_module.Bad = DiT, Bad
    assert renderer_traits("fakemod:DiT") == Traits("DiT", 8, True)
    message = one_line_error(renderer_traits, "fakemod:Bad")
    assert message == "renderer 'fakemod:Bad': latent_channels must be an int of at least 1, got '16'"


class FakeRendererBase:
    def encode_text(self, prompts):
        return prompts

    def render(self, encodings, noise):
        return noise


def test_rejected_option_is_named_with_the_accepted_ones():
    message = one_line_error(check_renderer, model(colour="blue"), ["a dog"])
    assert (
        message == "renderer 'doubles:FakeRenderer' does not take option 'colour' (its options: dim, seconds_per_frame)"
    )
    assert "colour" in one_line_error(load_renderer, model(colour="blue"))


def test_constructor_missing_a_standard_kwarg(fake_module):
    class NoWidth:
        def __init__(self, height, steps, guidance_scale, weights, precision, batch_size, extra): ...
        def encode_text(self, prompts): ...
        def render(self, encodings, noise): ...

    fake_module.NoWidth = NoWidth
    assert "does not take option 'width'" in one_line_error(check_renderer, model("fakemod:NoWidth"), [])


def test_check_renderer_calls_check_prompts_with_the_kwargs_and_never_builds(fake_module):
    seen = {}

    class Picky:
        def __init__(self, **kwargs):
            raise AssertionError("check_renderer must not build the renderer")

        @classmethod
        def check_prompts(cls, prompts, **kwargs):
            seen.update(prompts=prompts, kwargs=kwargs)
            if "cat" in prompts:
                raise RendererError("no cats")

        def encode_text(self, prompts): ...
        def render(self, encodings, noise): ...

    fake_module.Picky = Picky
    check_renderer(model("fakemod:Picky", anything=1), ["dog"])
    assert seen == {"prompts": ["dog"], "kwargs": renderer_kwargs(model(anything=1))}
    assert one_line_error(check_renderer, model("fakemod:Picky"), ["cat"]) == "no cats"


def test_check_renderer_returns_what_check_resources_cannot_check_here_and_strict_refuses_it(fake_module):
    seen = {}

    class Remote:
        def __init__(self, **kwargs):
            raise AssertionError("check_renderer must not build the renderer")

        @classmethod
        def check_resources(cls, **kwargs):
            seen.update(kwargs)
            if kwargs["weights"] == "broken":
                raise RendererError("weights are broken")
            return [] if kwargs["weights"] == "random" else [f"weights {kwargs['weights']} are not on this machine"]

        def encode_text(self, prompts): ...
        def render(self, encodings, noise): ...

    fake_module.Remote = Remote
    assert check_renderer(model("fakemod:Remote"), ["dog"], strict=True) == []
    assert seen == renderer_kwargs(model())
    remote = dataclasses.replace(model("fakemod:Remote"), weights="/mnt/w")
    assert check_renderer(remote, ["dog"]) == [
        "weights /mnt/w are not on this machine; render checks it on the workers"
    ]
    assert one_line_error(lambda: check_renderer(remote, ["dog"], strict=True)) == (
        "weights /mnt/w are not on this machine"
    )
    broken = dataclasses.replace(model("fakemod:Remote"), weights="broken")
    assert one_line_error(check_renderer, broken, ["dog"]) == "weights are broken"


def test_a_renderer_without_the_optional_checks_has_nothing_unchecked():
    assert check_renderer(model(), ["dog"], strict=True) == []
    assert check_renderer(model(), ["dog"]) == []


def test_renderer_error_is_one_line_bad_input_error():
    error = RendererError("first line\n  second line")
    assert isinstance(error, BadInputError) and error.exit_code == 2
    assert str(error) == "first line second line"


def test_fake_renderer_frames_do_not_depend_on_their_batch():
    renderer = load_renderer(model())
    enc = renderer.encode_text(["a", "b", "c"])
    noise = np.random.default_rng(3).standard_normal((3, 16, 8, 4)).astype(np.float32)
    together = renderer.render(enc, noise)
    assert np.array_equal(together[2:], renderer.render(enc[2:], noise[2:]))
    assert not np.array_equal(together[0], together[1])
    assert np.array_equal(enc[0], renderer.encode_text(["a"])[0])
