"""Trajectories against straightforward whole-walk implementations of the tutorial's formulas."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raywalk import job_from_dict
from raywalk.core.trajectory import CIRCLE_NOISE, EASINGS, FIXED_NOISE, KEYFRAME_NOISE, Trajectory, normal

from builders import make_job

D = 16  # a small encoding width keeps these tests in milliseconds
SIZE = 64  # 64x64 images: (8, 8, 4) latents


def keyframes(k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((k, 77, D)).astype(np.float32)


def whole(job, keys):
    return Trajectory(job, keys).frames(0, job.num_frames)


def reference_slerp(a, b, t):
    """Textbook slerp of two vectors (the stable-diffusion-videos form)."""
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    dot = a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64))
    if abs(dot) > 0.9995:
        return (1 - t) * a + t * b
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta)


def test_two_prompt_lerp_is_the_tutorials_linspace():
    keys = keyframes(2)
    job = make_job({"kind": "interpolate", "frames": 5}, 2)
    enc, noise = whole(job, keys)
    np.testing.assert_allclose(enc, np.linspace(keys[0], keys[1], 5), rtol=1e-6, atol=1e-6)
    assert enc.dtype == np.float32 and noise.dtype == np.float32
    assert noise.shape == (5, SIZE // 8, SIZE // 8, 4)
    # Fixed noise: one draw for every frame.
    expected = normal((8, 8, 4), 12345, FIXED_NOISE).astype(np.float32)
    assert all(np.array_equal(n, expected) for n in noise)


def test_multi_prompt_path_repeats_no_joint():
    keys = keyframes(3)
    job = make_job({"kind": "interpolate", "frames": 7}, 3)
    enc, _ = whole(job, keys)
    expected = np.concatenate([np.linspace(keys[0], keys[1], 4)[:-1], np.linspace(keys[1], keys[2], 4)])
    np.testing.assert_allclose(enc, expected, rtol=1e-6, atol=1e-6)
    assert all(not np.array_equal(enc[i], enc[i + 1]) for i in range(6))


def test_loop_returns_towards_the_first_prompt_without_repeating_it():
    keys = keyframes(3)
    job = make_job({"kind": "interpolate", "frames": 6, "loop": True}, 3)
    enc, _ = whole(job, keys)
    pairs = [(0, 1), (1, 2), (2, 0)]
    expected = np.concatenate([np.linspace(keys[a], keys[b], 3)[:-1] for a, b in pairs])
    np.testing.assert_allclose(enc, expected, rtol=1e-6, atol=1e-6)


def test_slerp_interpolation():
    keys = keyframes(2)
    job = make_job({"kind": "interpolate", "frames": 9, "method": "slerp"}, 2)
    enc, _ = whole(job, keys)
    for i in range(9):
        np.testing.assert_allclose(enc[i], reference_slerp(keys[0], keys[1], i / 8), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("easing", ["ease_in_out", "cosine"])
def test_easing_changes_pace_not_ends(easing):
    keys = keyframes(2)
    job = make_job({"kind": "interpolate", "frames": 11, "easing": easing}, 2)
    enc, _ = whole(job, keys)
    t = np.linspace(0, 1, 11)
    eased = {"ease_in_out": 3 * t**2 - 2 * t**3, "cosine": 0.5 - 0.5 * np.cos(np.pi * t)}[easing]
    expected = keys[0] + eased[:, None, None] * (keys[1] - keys[0])
    np.testing.assert_allclose(enc, expected, rtol=1e-5, atol=1e-5)
    steps = np.abs(np.diff(eased))
    assert steps[0] < steps[5] and steps[-1] < steps[5]  # slow at both ends
    assert EASINGS[easing](np.array([0.0, 0.5, 1.0])).tolist() == pytest.approx([0, 0.5, 1])


def test_grid_is_the_tutorials_nested_linspace():
    n = 6
    keys = keyframes(4)
    job = make_job({"kind": "grid", "size": n}, 4)
    enc, _ = whole(job, keys)
    tutorial = np.linspace(np.linspace(keys[0], keys[1], n), np.linspace(keys[2], keys[3], n), n)
    np.testing.assert_allclose(enc, tutorial.reshape(n * n, 77, D), rtol=1e-5, atol=1e-5)
    assert job.num_frames == 36
    params = Trajectory(job, keys).params(7, 8)
    assert params["row"].tolist() == [1] and params["col"].tolist() == [1]


def test_grid_varying_noise_is_fresh_per_frame_and_keyed_by_frame():
    job = make_job({"kind": "grid", "size": 3}, 4, {"kind": "per_frame", "seed": 7})
    traj = Trajectory(job, keyframes(4))
    _, noise = traj.frames(0, 9)
    assert len({n.tobytes() for n in noise}) == 9
    _, again = traj.frames(4, 5)
    np.testing.assert_array_equal(again[0], noise[4])


def test_text_walk_with_ones_is_the_tutorials_constant_step():
    keys = keyframes(1)
    job = make_job({"kind": "text_walk", "frames": 150, "step_size": 0.005}, 1)
    enc, _ = whole(job, keys)
    encoding = keys[0].astype(np.float64)
    delta = np.ones_like(encoding) * 0.005
    walked = []
    for _ in range(150):
        walked.append(encoding.copy())
        encoding += delta
    np.testing.assert_allclose(enc, np.stack(walked), rtol=1e-5, atol=1e-5)


def test_text_walk_random_direction_is_seeded():
    keys = keyframes(1)
    a = whole(make_job({"kind": "text_walk", "frames": 4, "direction": "random", "direction_seed": 3}, 1), keys)[0]
    b = whole(make_job({"kind": "text_walk", "frames": 4, "direction": "random", "direction_seed": 3}, 1), keys)[0]
    c = whole(make_job({"kind": "text_walk", "frames": 4, "direction": "random", "direction_seed": 4}, 1), keys)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[1], c[1])
    step = a[1] - a[0]
    assert not np.allclose(step, step.flat[0])  # not the constant ones direction


def circle_reference(x, y, thetas):
    """The tutorial's tensordot form of the noise circle."""
    return np.tensordot(np.cos(thetas), x, axes=0) + np.tensordot(np.sin(thetas), y, axes=0)


def test_noise_circle_tutorial_mode():
    n = 150
    job = make_job({"kind": "noise_circle", "frames": n, "mode": "tutorial"}, 1, {"seed": 99})
    keys = keyframes(1)
    enc, noise = whole(job, keys)
    x, y = (normal((8, 8, 4), 99, CIRCLE_NOISE, k) for k in (0, 1))
    expected = circle_reference(x, y, np.linspace(0, 2, n) * np.pi)
    np.testing.assert_allclose(noise, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(noise[0], noise[-1], atol=1e-5)  # the tutorial repeats its first frame
    assert all(np.array_equal(e, keys[0]) for e in enc)


def test_noise_circle_seamless_mode_is_the_default():
    n = 12
    job = make_job({"kind": "noise_circle", "frames": n}, 1, {"seed": 5})
    _, noise = whole(job, keyframes(1))
    x, y = (normal((8, 8, 4), 5, CIRCLE_NOISE, k) for k in (0, 1))
    np.testing.assert_allclose(noise, circle_reference(x, y, 2 * np.pi * np.arange(n) / n), rtol=1e-5, atol=1e-5)
    # The step from the last frame back to the first is an ordinary step: a seamless loop.
    gap = np.linalg.norm(noise[0] - noise[-1])
    assert gap == pytest.approx(np.linalg.norm(noise[1] - noise[0]), rel=0.3)


def test_slerp_noise_between_seeded_keyframe_noises():
    job = make_job({"kind": "interpolate", "frames": 5}, 2, {"kind": "slerp", "seeds": [11, 22]})
    _, noise = whole(job, keyframes(2))
    a, b = (normal((8, 8, 4), s, KEYFRAME_NOISE) for s in (11, 22))
    for i in range(5):
        np.testing.assert_allclose(noise[i], reference_slerp(a, b, i / 4), rtol=1e-5, atol=1e-5)


def test_slerp_noise_on_a_grid_reaches_the_corner_noises():
    job = make_job({"kind": "grid", "size": 3}, 4, {"kind": "slerp", "seed": 40})
    _, noise = whole(job, keyframes(4))
    for frame, k in ((0, 0), (2, 1), (6, 2), (8, 3)):
        np.testing.assert_allclose(noise[frame], normal((8, 8, 4), 40 + k, KEYFRAME_NOISE), rtol=1e-5, atol=1e-5)


ALL_KINDS = [
    ({"kind": "interpolate", "frames": 23, "method": "slerp", "easing": "cosine"}, 3, {"kind": "slerp"}),
    ({"kind": "interpolate", "frames": 17, "loop": True}, 2, {"kind": "per_frame"}),
    ({"kind": "grid", "size": 4}, 4, {"kind": "per_frame"}),
    ({"kind": "text_walk", "frames": 19, "direction": "random"}, 1, {}),
    ({"kind": "noise_circle", "frames": 21}, 1, {}),
]


@pytest.mark.parametrize("walk,prompts,noise", ALL_KINDS)
def test_a_range_alone_equals_the_same_frames_of_the_whole_walk(walk, prompts, noise):
    job = make_job(walk, prompts, noise)
    keys = keyframes(prompts)
    enc, noi = whole(job, keys)
    for start, stop in ((0, 1), (3, 10), (job.num_frames - 2, job.num_frames), (5, 5)):
        e, n = Trajectory(job, keys).frames(start, stop)
        np.testing.assert_array_equal(e, enc[start:stop])
        np.testing.assert_array_equal(n, noi[start:stop])


def test_out_of_range_frames_are_refused():
    job = make_job({"kind": "interpolate", "frames": 4}, 2)
    with pytest.raises(IndexError, match="outside the walk's 4 frames"):
        Trajectory(job, keyframes(2)).frames(2, 5)


def test_keyframes_must_match_the_prompts():
    job = make_job({"kind": "interpolate", "frames": 4}, 2)
    with pytest.raises(ValueError, match="K = 2 prompts"):
        Trajectory(job, keyframes(3))


FRAME_DIGEST = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from raywalk import Trajectory, job_from_dict
    job = job_from_dict({"prompts": ["a", "b", "c"], "walk": {"kind": "interpolate", "frames": 40,
        "method": "slerp"}, "noise": {"kind": "per_frame", "seed": 3}, "model": {"width": 64, "height": 64}})
    keys = np.random.default_rng(0).standard_normal((3, 77, 16)).astype(np.float32)
    enc, noise = Trajectory(job, keys).frames(int(sys.argv[1]), int(sys.argv[2]))
    print(hashlib.sha256(enc.tobytes() + noise.tobytes()).hexdigest())
""")


def test_the_same_frames_in_two_separate_processes():
    digests = [
        subprocess.run(
            [sys.executable, "-c", FRAME_DIGEST, "10", "30"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    job = job_from_dict(
        {
            "prompts": ["a", "b", "c"],
            "walk": {"kind": "interpolate", "frames": 40, "method": "slerp"},
            "noise": {"kind": "per_frame", "seed": 3},
            "model": {"width": 64, "height": 64},
        }
    )
    keys = np.random.default_rng(0).standard_normal((3, 77, 16)).astype(np.float32)
    enc, noise = Trajectory(job, keys).frames(10, 30)
    here = hashlib.sha256(enc.tobytes() + noise.tobytes()).hexdigest()
    assert digests == [here, here]


# Golden values: a change of keying (seed, stream, index), of numpy's generator or of its stream
# changes every frame of every run, and silently mixes old and new noise in a resumed run.
GOLDEN_DRAWS = [
    (
        (8, 8, 4),
        12345,
        FIXED_NOISE,
        0,
        "2f7cd5b899b35784133b3157c20c00ae21a2aef5d564989dfda65b9bed695a11",
        [-1.4238250364546312, 1.2637284581291104, -0.8706617379590857],
    ),
    (
        (8, 8, 4),
        99,
        CIRCLE_NOISE,
        1,
        "947edfac98486b62fab1fe51ca04e542e09badafec71949665dbd28f19b8ce98",
        [1.307659541579938, 0.7357948103150708, 0.8180254008885929],
    ),
    (
        (8, 8, 4),
        40,
        KEYFRAME_NOISE,
        0,
        "497f8b06d675a86b730091c39b6da82dcb5ccf628c5013bd7abab85021ece238",
        [0.5628718572452279, -0.1708224227689446, 0.35960578856776715],
    ),
    (
        (64, 64, 4),
        7,
        FIXED_NOISE,
        3,
        "c4ca210744598b7d8e1d1844f46af93c11eb580a71152e15176b6791aa520918",
        [0.45609358009147466, -1.0842138791144404, 1.055040796844857],
    ),
]


@pytest.mark.parametrize("shape,seed,stream,index,digest,first", GOLDEN_DRAWS)
def test_draws_are_the_recorded_golden_values(shape, seed, stream, index, digest, first):
    draw = normal(shape, seed, stream, index)
    assert draw.dtype == np.float64 and draw.shape == shape
    assert draw.ravel()[:3].tolist() == first
    assert hashlib.sha256(draw.tobytes()).hexdigest() == digest


def test_frame_noise_is_keyed_as_recorded():
    grid = make_job({"kind": "grid", "size": 3}, 4, {"kind": "per_frame", "seed": 7})
    _, noise = Trajectory(grid, keyframes(4)).frames(3, 5)
    assert [hashlib.sha256(n.tobytes()).hexdigest() for n in noise] == [
        "9b0c56a1de9ea3177d9f787a823b890d5ae9f5d6c84a4354095520c3204d8d6a",
        "2de4c37e5441fc0475c4fb5e2c23790ad08df39d96a1ae257874742c9dbf1e86",
    ]
    fixed = make_job({"kind": "interpolate", "frames": 3}, 2)
    _, noise = Trajectory(fixed, keyframes(2)).frames(2, 3)
    assert hashlib.sha256(noise[0].tobytes()).hexdigest() == (
        "dff5f5268d221a6ed580f0ee29b1f22a9411d25e59ca610539e17da08410aff1"
    )


# ---------------------------------------------------------------------------- named parts (SD3)

PART_WALKS = [
    ({"kind": "interpolate", "frames": 7, "method": "slerp"}, 3, {"kind": "slerp"}),
    ({"kind": "interpolate", "frames": 6, "method": "lerp", "loop": True, "easing": "cosine"}, 2, None),
    ({"kind": "grid", "size": 3, "method": "slerp"}, 4, {"kind": "per_frame"}),
    ({"kind": "text_walk", "frames": 5, "step_size": 0.01}, 1, None),
    ({"kind": "noise_circle", "frames": 5, "mode": "tutorial"}, 1, None),
]


@pytest.mark.parametrize("walk,prompts,noise", PART_WALKS, ids=[w[0]["kind"] for w in PART_WALKS])
def test_every_walk_moves_every_part_as_it_moves_one_array(walk, prompts, noise):
    """SD3's two parts: each walks exactly as a lone array would (the first one bit for bit), the noise takes
    the renderer's 16 latent channels."""
    job = make_job(walk, prompts, noise)
    rng = np.random.default_rng(1)
    parts = {
        "sequence": rng.standard_normal((prompts, 5, 12)).astype(np.float32),
        "pooled": rng.standard_normal((prompts, 9)).astype(np.float32),
    }
    latent = (SIZE // 8, SIZE // 8, 16)
    encodings, noise_out = Trajectory(job, parts, latent_shape=latent).frames(0, job.num_frames)
    assert set(encodings) == {"sequence", "pooled"} and noise_out.shape == (job.num_frames, *latent)
    alone, _ = Trajectory(job, parts["sequence"], latent_shape=latent).frames(0, job.num_frames)
    np.testing.assert_array_equal(encodings["sequence"], alone)
    if walk["kind"] != "text_walk" or walk.get("direction") == "random":
        alone_pooled, _ = Trajectory(job, parts["pooled"], latent_shape=latent).frames(0, job.num_frames)
        np.testing.assert_array_equal(encodings["pooled"], alone_pooled)
    assert encodings["pooled"].shape == (job.num_frames, 9) and encodings["pooled"].dtype == np.float32
    # A range alone equals the same slice of the whole walk, part by part.
    some, _ = Trajectory(job, parts, latent_shape=latent).frames(2, 4)
    for name in parts:
        np.testing.assert_array_equal(some[name], encodings[name][2:4])


def test_the_tutorial_slerps_both_sd3_parts():
    """SD3 tutorial: slerp (dot threshold 0.9995) of the sequence and of the pooled vector, endpoints included."""
    job = make_job({"kind": "interpolate", "frames": 5, "method": "slerp"}, 2)
    rng = np.random.default_rng(2)
    parts = {"sequence": rng.standard_normal((2, 4, 6)), "pooled": rng.standard_normal((2, 8))}
    encodings, _ = Trajectory(job, parts, latent_shape=(8, 8, 16)).frames(0, 5)
    for name, part in parts.items():
        for i, t in enumerate(np.linspace(0, 1, 5)):
            np.testing.assert_allclose(
                encodings[name][i], reference_slerp(part[0], part[1], t).reshape(part[0].shape), rtol=1e-5, atol=1e-6
            )


def test_a_random_text_walk_draws_one_direction_per_part():
    job = make_job({"kind": "text_walk", "frames": 3, "step_size": 0.5, "direction": "random"}, 1)
    parts = {"a": np.zeros((1, 4, 3)), "b": np.zeros((1, 4, 3))}
    encodings, _ = Trajectory(job, parts).frames(2, 3)
    assert not np.array_equal(encodings["a"], encodings["b"])  # independent streams, not one direction twice
    np.testing.assert_array_equal(encodings["a"][0], (1.0 * normal((4, 3), 0, 4, 0)).astype(np.float32))
    np.testing.assert_array_equal(encodings["b"][0], (1.0 * normal((4, 3), 0, 4, 1)).astype(np.float32))


def test_parts_that_do_not_fit_the_prompts_are_refused():
    job = make_job({"kind": "interpolate", "frames": 3}, 2)
    with pytest.raises(ValueError, match="keyframe part 'pooled' must be"):
        Trajectory(job, {"sequence": np.zeros((2, 4, 6)), "pooled": np.zeros((3, 8))})
    with pytest.raises(ValueError, match="keyframes hold no parts"):
        Trajectory(job, {})


# The trajectory's promise: frame i's inputs are the same whatever the chunking, batch or range it is asked in.

RECORDED = {"sha256": "0" * 64, "width": 64, "height": 64}

PROMISE_WALKS = (
    ({"kind": "interpolate", "frames": 9, "method": "slerp", "easing": "cosine"}, 3, ("fixed", "per_frame", "slerp")),
    ({"kind": "interpolate", "frames": 7, "loop": True}, 2, ("fixed", "per_frame", "slerp")),
    ({"kind": "grid", "size": 3, "method": "slerp"}, 4, ("fixed", "per_frame", "slerp")),
    ({"kind": "text_walk", "frames": 8, "direction": "random", "step_size": 0.1}, 1, ("fixed", "per_frame")),
    ({"kind": "noise_circle", "frames": 8}, 1, ("circle",)),
    ({"kind": "noise_circle", "frames": 6, "mode": "tutorial"}, 1, ("circle",)),
    # walks that start from pictures (recorded as a manifest records them: no file is read)
    (
        {
            "kind": "interpolate",
            "method": "slerp",
            "keyframes": [
                {"image": "a.png", "strength": 0.3, **RECORDED},
                {"at": 4, "easing": "ease_in_out"},
                {"at": 7, "image": "b.png", "strength": 0.8, **RECORDED},
                {"at": 10, "image": "a.png", "strength": 0.1, **RECORDED},
            ],
        },
        4,
        ("fixed", "per_frame", "slerp"),
    ),
    ({"kind": "grid", "size": 3, "init_image": {"image": "a.png", "strength": 0.6, **RECORDED}}, 4, ("per_frame",)),
)


def check_any_range_is_per_frame(walk: dict, prompts: int, noise: str, seed: int, start: int, stop: int) -> None:
    """frames(start, stop) equals frames(i, i + 1) for each i in it, from a fresh trajectory and a reused one."""
    job = make_job(walk, prompts, {"kind": noise, "seed": seed})
    start, stop = sorted((start % job.num_frames, stop % (job.num_frames + 1)))
    stop = max(stop, start + 1)
    pictures = (
        np.random.default_rng(seed % 1000).standard_normal((len(job.pictures), 8, 8, 4)) if job.pictures else None
    )
    traj = Trajectory(job, keyframes(prompts, seed), pictures=pictures)
    enc, noises = traj.frames(start, stop)
    starts, params = traj.starts(start, stop), traj.params(start, stop)
    for i in range(start, stop):
        alone = Trajectory(job, keyframes(prompts, seed), pictures=pictures)
        one_enc, one_noise = alone.frames(i, i + 1)
        assert np.array_equal(enc[i - start], one_enc[0]) and np.array_equal(noises[i - start], one_noise[0])
        again_enc, again_noise = traj.frames(i, i + 1)
        assert np.array_equal(again_enc, one_enc) and np.array_equal(again_noise, one_noise)
        one_params = alone.params(i, i + 1)
        assert all(np.array_equal(params[k][i - start], one_params[k][0]) for k in params)
        one_starts = alone.starts(i, i + 1)
        if starts is None:
            assert one_starts is None and not job.pictures
            continue
        assert one_starts is not None
        assert np.array_equal(starts.latents[i - start], one_starts.latents[0])
        assert starts.steps[i - start] == one_starts.steps[0] and starts.strength[i - start] == one_starts.strength[0]


@st.composite
def _promise_case(draw):
    walk, prompts, noises = draw(st.sampled_from(PROMISE_WALKS))
    return walk, prompts, draw(st.sampled_from(noises))


@settings(max_examples=60, deadline=None)
@given(case=_promise_case(), seed=st.integers(0, 2**63 - 1), start=st.integers(0, 100), stop=st.integers(0, 100))
def test_a_frames_inputs_do_not_depend_on_the_range_it_is_asked_in(case, seed, start, stop):
    """Hypothesis property: any walk, noise, seed and range gives each frame the inputs it has alone."""
    walk, prompts, noise = case
    check_any_range_is_per_frame(walk, prompts, noise, seed, start, stop)
