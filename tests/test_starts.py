"""Where frames start from pictures (`Trajectory.starts`): the maths of the module docstring, frame by frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raywalk.core.starts import start_step
from raywalk.core.trajectory import Trajectory, slerp

from builders import make_job

RECORDED = {"sha256": "0" * 64, "width": 64, "height": 64}
SHAPE = (8, 8, 4)


def pictures(m: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((m, *SHAPE)).astype(np.float32)


def texts(k: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((k, 77, 16)).astype(np.float32)


def keyframe_job(entries: list[dict], steps: int = 20, easing: str = "linear"):
    prompts = ["" if "image" in e else f"prompt {k}" for k, e in enumerate(entries)]
    walk = {"kind": "interpolate", "keyframes": entries, "easing": easing}
    return make_job(walk, prompts, {"kind": "per_frame", "seed": 5}, model={"width": 64, "height": 64, "steps": steps})


def picture(name: str, strength: float) -> dict:
    return {"image": name, "strength": strength, **RECORDED}


def test_start_step_is_kerashubs_integer_of_steps_times_one_minus_strength():
    for steps in (1, 4, 20, 28, 50):
        for strength in np.linspace(0, 1, 41):
            assert start_step(strength, steps) == int(steps * (1.0 - float(strength)))
    assert start_step(np.array([0.0, 1.0]), 20).tolist() == [20, 0]


def test_keyframe_frames_start_exactly_from_their_pictures_at_their_strengths():
    job = keyframe_job([{**picture("a.png", 0.25)}, {"at": 5}, {"at": 11, **picture("b.png", 0.6)}])
    p = pictures(2)
    starts = Trajectory(job, texts(3), pictures=p).starts(0, job.num_frames)
    assert starts is not None
    assert starts.latents.dtype == np.float32 and starts.steps.dtype == np.int32 and starts.strength.dtype == np.float64
    assert np.array_equal(starts.latents[0], p[0]) and np.array_equal(starts.latents[11], p[1])
    assert starts.strength[0] == 0.25 and starts.strength[11] == 0.6 and starts.strength[5] == 1.0
    assert starts.steps[0] == 15 and starts.steps[11] == 8 and starts.steps[5] == 0


def test_an_image_dissolves_into_a_text_keyframe_and_grows_out_of_one():
    job = keyframe_job([{**picture("a.png", 0.2)}, {"at": 10}, {"at": 20, **picture("a.png", 0.0)}], easing="cosine")
    p = np.repeat(pictures(1), 2, axis=0)  # the same file at two strengths: two pictures, one encoding
    traj = Trajectory(job, texts(3), pictures=p)
    starts, params = traj.starts(0, 21), traj.params(0, 21)
    assert starts is not None
    assert all(np.array_equal(z, p[0]) for z in starts.latents)  # one picture on each side: its latents throughout
    t = params["t"]
    np.testing.assert_allclose(starts.strength[:10], 0.2 + t[:10] * 0.8)  # eased as the text is
    np.testing.assert_allclose(starts.strength[10:], 1.0 - t[10:])
    assert starts.strength[10] == 1.0 and starts.steps[10] == 0  # the text keyframe: text-to-image
    assert np.all(np.diff(starts.strength[:11]) >= 0) and np.all(np.diff(starts.strength[10:]) <= 0)
    assert np.array_equal(params["strength"], starts.strength) and np.array_equal(params["start_step"], starts.steps)


def test_between_two_pictures_the_latents_slerp_and_the_strength_moves_linearly_in_t():
    job = keyframe_job([{**picture("a.png", 0.1)}, {"at": 8, **picture("b.png", 0.9)}])
    p = pictures(2)
    traj = Trajectory(job, texts(2), pictures=p)
    starts, t = traj.starts(0, 9), traj.params(0, 9)["t"]
    assert starts is not None
    expected = slerp(np.repeat(p[:1].astype(np.float64), 9, 0), np.repeat(p[1:].astype(np.float64), 9, 0), t)
    np.testing.assert_array_equal(starts.latents, expected.astype(np.float32))
    np.testing.assert_allclose(starts.strength, 0.1 + 0.8 * t)
    assert starts.steps.tolist() == [int(20 * (1 - s)) for s in starts.strength]


def test_segments_between_text_keyframes_start_from_noise_alone():
    job = keyframe_job([{"at": 0}, {"at": 4}, {"at": 8, **picture("a.png", 0.5)}])
    starts = Trajectory(job, texts(3), pictures=pictures(1)).starts(0, 4)
    assert starts is not None
    assert (starts.strength == 1).all() and (starts.steps == 0).all() and not starts.latents.any()


@pytest.mark.parametrize(
    "walk,prompts,noise",
    [
        ({"kind": "interpolate", "frames": 6}, 2, "per_frame"),
        ({"kind": "grid", "size": 2}, 4, "slerp"),
        ({"kind": "text_walk", "frames": 5}, 1, "fixed"),
        ({"kind": "noise_circle", "frames": 5}, 1, "circle"),
    ],
)
def test_an_init_image_starts_every_frame_from_it_at_its_strength(walk, prompts, noise):
    init = {"init_image": {"image": "a.png", "strength": 0.7, "fit": "pad", **RECORDED}}
    job = make_job({**walk, **init}, prompts, {"kind": noise}, model={"width": 64, "height": 64, "steps": 10})
    p = pictures(1)
    starts = Trajectory(job, texts(prompts), pictures=p).starts(0, job.num_frames)
    assert starts is not None
    assert all(np.array_equal(z, p[0]) for z in starts.latents)
    assert (starts.strength == 0.7).all() and (starts.steps == 3).all()


def test_a_job_without_pictures_has_no_starts_and_its_params_are_unchanged():
    job = make_job({"kind": "interpolate", "frames": 6}, 2)
    traj = Trajectory(job, texts(2))
    assert traj.starts(0, 6) is None and set(traj.params(0, 6)) == {"segment", "t"}


def test_pictures_must_fit_the_job():
    job = keyframe_job([{**picture("a.png", 0.1)}, {"at": 8, **picture("b.png", 0.9)}])
    with pytest.raises(ValueError, match="encodings of the job's pictures"):
        Trajectory(job, texts(2), pictures=pictures(1))
    with pytest.raises(ValueError, match="needs their encodings"):
        Trajectory(job, texts(2)).starts(0, 1)


# ---------------------------------------------------------------------------- what plan and frames say of it


def test_plan_counts_the_encodings_and_the_evaluations_saved(tmp_path):
    from raywalk.core.plan import make_plan

    from builders import cli, write_picture_job

    job = keyframe_job([{**picture("a.png", 0.5)}, {"at": 4}], steps=10)
    plan = make_plan(job)
    steps = Trajectory(job, texts(2)).params(0, 5)["start_step"]
    assert steps.tolist() == [int(10 * (1 - s)) for s in (0.5, 0.625, 0.75, 0.875, 1.0)] == [5, 3, 2, 1, 0]
    assert plan.encodings == 1 and plan.saved == 11 * 2  # two guidance passes per step
    text = make_plan(make_job({"kind": "interpolate", "frames": 5}, 2))
    assert text.encodings == 0 and text.saved == 0
    printed = cli("plan", write_picture_job(tmp_path, frames=5, steps=10, strengths=(0.5, 0.0))).stdout
    assert "starting late     1 VAE encoding; 22 UNet evaluations saved" in printed
    assert "pictures/ (1 copy)" in printed and "images/a.png (96x64, crop, strength 0.5)" in printed


def test_a_picture_frames_text_says_its_denoising_strength_and_picture():
    from raywalk.core.frameinfo import frame_text

    job = keyframe_job([{**picture("a.png", 0.25)}, {"at": 4}])
    params = {k: v[0].item() for k, v in Trajectory(job, texts(2)).params(2, 3).items()}
    text = frame_text(job, 2, params, random_weights=True)
    assert "Denoising strength: 0.625" in text["parameters"] and f"Pictures: {'0' * 64}" in text["parameters"]
    record = json.loads(text["raywalk"])
    assert record["pictures"] == [{"image": "a.png", "sha256": "0" * 64}] and record["strength"] == 0.625
    assert record["walk"]["at"]["start_step"] == int(20 * (1 - 0.625)) == 7
