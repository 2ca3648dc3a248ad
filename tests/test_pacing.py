"""Perceptual pacing: a non-uniform image path scores low when spaced evenly and high once re-spaced."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from raywalk import Trajectory, job_from_dict
from raywalk.core.pacing import (
    PerceptualWarp,
    distances,
    first_pass_job,
    first_pass_trajectory,
    gini,
    image_distance,
    max_jump,
    sample_points,
    smoothness,
)
from raywalk.core.plan import first_pass_plan
from raywalk.core.timing import job_table, needs_table, walk_table
from raywalk.core.trajectory import block_mean

from builders import make_job

RNG = np.random.default_rng(0)
A = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)  # noise ...
_y, _x = np.mgrid[:48, :64]
B = np.stack([_x * 4 % 256, _y * 5 % 256, (_x + _y) * 2 % 256], axis=-1).astype(np.uint8)  # ... to stripes


def image_at(u: float) -> np.ndarray:
    """A test walk over two segments: A -> B along a steep sigmoid (almost all change mid-way), then B -> A
    along a plain linear fade, so the two segments need different re-spacing."""
    if u <= 1:
        w = 1 / (1 + np.exp(-14 * (u - 0.5)))
        w = (w - 1 / (1 + np.exp(7))) / (1 - 2 / (1 + np.exp(7)))  # exactly 0 at u = 0 and 1 at u = 1
    else:
        w = 2 - u
    return np.clip((1 - w) * A + w * B + 0.5, 0, 255).astype(np.uint8)


# A perceptually paced walk of 61 frames over three prompts, 9 first-pass samples.
PERCEPTUAL = {
    "walk": {"kind": "interpolate", "frames": 61, "pacing": "perceptual"},
    "prompts": ["a", "b", "c"],
    "pacing": {"samples": 9, "steps": 4, "size": 128},
    "model": {"width": 256, "height": 256, "steps": 20, "batch_size": 4},
}


def uniform(job):
    """The same job paced evenly."""
    return dataclasses.replace(job, walk=dataclasses.replace(job.walk, pacing="uniform"), pacing=None)


def test_perceptual_pacing_evens_out_a_non_uniform_walk():
    job = make_job(**PERCEPTUAL)
    d_uniform = distances(image_at(u) for u in walk_table(uniform(job)))

    first = sample_points(job.segments, job.pacing.samples)  # the first pass: 17 images
    d_first = distances(image_at(u) for u in first)
    paced = walk_table(job, warp=PerceptualWarp.from_distances(d_first, job.segments, job.pacing.samples))
    assert needs_table(job) and np.array_equal(job_table(job, first_pass_distances=d_first), paced)
    d_paced = distances(image_at(u) for u in paced)

    before = (smoothness(d_uniform), max_jump(d_uniform))
    after = (smoothness(d_paced), max_jump(d_paced))
    print(
        f"\n{job.num_frames} frames, first pass {len(first)} images: smoothness {before[0]:.3f} -> {after[0]:.3f}, "
        f"max/mean jump {before[1]:.2f} -> {after[1]:.2f}"
    )
    assert before[0] < 0.7 and before[1] > 2.5
    assert after[0] >= 0.9 and after[1] <= 1.5
    # Monotone, ends and the middle prompt pinned to the frames uniform pacing gives them.
    assert np.all(np.diff(paced) > 0) and paced[0] == 0 and paced[-1] == 2 and paced[30] == 1


def test_keyframes_stay_pinned_under_a_warp():
    job = job_from_dict(
        {
            "prompts": ["a", "b", "c"],
            "walk": {
                "kind": "interpolate",
                "pacing": "perceptual",
                "keyframes": [{}, {"at": 10, "easing": "ease_in_out"}, {"at": 40}],
            },
        }
    )
    d = np.r_[np.linspace(1, 5, 8), np.linspace(5, 1, 8)]
    table = walk_table(job, warp=PerceptualWarp.from_distances(d, 2, 9))
    assert table[0] == 0 and table[10] == 1 and table[40] == 2 and np.all(np.diff(table) > 0)


def test_gini_smoothness_and_jump_definitions():
    assert gini(np.ones(10)) == 0 and smoothness(np.ones(10)) == 1 and max_jump(np.ones(10)) == 1
    d = np.array([0, 0, 0, 4.0])
    brute = np.abs(d[:, None] - d[None, :]).sum() / (2 * len(d) ** 2 * d.mean())
    assert gini(d) == pytest.approx(brute) == pytest.approx(0.75)
    assert max_jump(d) == 4


def test_the_distance_is_zero_for_equal_images_and_adds_up_along_a_cross_fade():
    assert image_distance(A, A) == 0
    half = ((A.astype(float) + B) / 2).round().astype(np.uint8)
    assert image_distance(A, half) + image_distance(half, B) == pytest.approx(image_distance(A, B), rel=0.02)


def test_the_warp_needs_one_distance_per_first_pass_step():
    with pytest.raises(ValueError, match="need 16 finite non-negative distances"):
        PerceptualWarp.from_distances(np.ones(15), 2, 9)
    still = PerceptualWarp.from_distances(np.zeros(8), 1, 9)  # nothing changes: the even steps stay
    np.testing.assert_array_equal(still(np.zeros(5, int), np.linspace(0, 1, 5)), np.linspace(0, 1, 5))


def test_the_first_pass_is_a_small_even_job_that_sees_the_jobs_noise():
    job = make_job(**PERCEPTUAL)
    first = first_pass_job(job)
    assert first.num_frames == 2 * 8 + 1 and (first.model.width, first.model.height, first.model.steps) == (128, 128, 4)
    keys = np.random.default_rng(1).standard_normal((3, 77, 8)).astype(np.float32)
    p = Trajectory(first, keys).params(0, first.num_frames)
    np.testing.assert_allclose(p["segment"] + p["t"], sample_points(2, 9), atol=1e-15)
    _, small = first_pass_trajectory(job, keys).frames(0, 2)
    _, full = Trajectory(job, keys).frames(0, 1)
    np.testing.assert_allclose(small[0], block_mean(full.astype(np.float64), 2)[0], atol=1e-5)
    assert small.shape == (2, 16, 16, 4) and 0.8 < small.std() < 1.2
    plan = first_pass_plan(job)
    assert plan is not None and plan.frames == 17 and plan.unet_evaluations == 20 * 4 * 2  # 5 batches of 4
    assert first_pass_plan(uniform(job)) is None
