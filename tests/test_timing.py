"""Walk timing: keyframes at frames and seconds, steps that follow a soundtrack, the job-file side."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
import yaml

from raywalk import JobError, Trajectory, job_from_dict, load_job
from raywalk.core.timing import (
    frame_energy,
    job_table,
    music_weights,
    needs_table,
    progress,
    release,
    step_weights,
    walk_table,
)
from raywalk.outputs.audio import envelope, probe

from builders import make_job

D, SIZE = 16, 64


def keys(k: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((k, 77, D)).astype(np.float32)


def write_job(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------------------- keyframes


def test_keyframe_positions_give_the_frame_counts_and_parameters():
    job = make_job({"kind": "interpolate", "keyframes": [{"at": 0}, {"at": 4, "easing": "cosine"}, {"at": 12}]})
    assert job.num_frames == 13
    p = Trajectory(job, keys(3)).params(0, 13)
    assert p["segment"].tolist() == [0] * 4 + [1] * 9
    x = np.concatenate([np.arange(4) / 4, np.arange(9) / 8])
    expected = np.where(np.arange(13) < 4, x, (1 - np.cos(np.pi * x)) / 2)
    np.testing.assert_allclose(p["t"], expected, rtol=0, atol=1e-15)
    enc, _ = Trajectory(job, keys(3)).frames(0, 13)
    k = keys(3)
    for frame, prompt in ((0, 0), (4, 1), (12, 2)):  # each keyframe's frame is its prompt, exactly
        np.testing.assert_array_equal(enc[frame], k[prompt])


def test_keyframes_at_seconds_use_timing_fps_and_the_ends_may_be_left_out():
    job = make_job({"kind": "interpolate", "frames": 97, "keyframes": [{}, {"seconds": 1.5}, {}]}, timing={"fps": 24})
    assert [kf.frame for kf in job.walk.keyframes] == [0, 36, 96]
    assert job.walk.keyframes[1].seconds == 1.5
    again = job_from_dict(job.to_dict())
    assert again == job and again.fingerprint() == job.fingerprint()


def test_evenly_placed_keyframes_reproduce_the_plain_walk():
    plain = make_job({"kind": "interpolate", "frames": 9, "easing": "ease_in_out"})
    pinned = make_job({"kind": "interpolate", "easing": "ease_in_out", "keyframes": [{}, {"at": 4}, {"at": 8}]})
    a, b = Trajectory(plain, keys(3)), Trajectory(pinned, keys(3))
    np.testing.assert_allclose(b.params(0, 9)["t"], a.params(0, 9)["t"], atol=1e-15)
    np.testing.assert_allclose(b.frames(0, 9)[0], a.frames(0, 9)[0], atol=1e-6)


def test_keyframe_seeds_become_the_slerp_noise_seeds():
    job = make_job(
        {"kind": "interpolate", "keyframes": [{"seed": 5}, {"at": 3}, {"at": 6, "seed": 9}]},
        noise={"kind": "slerp", "seed": 100},
    )
    assert job.noise.seeds == (5, 101, 9)
    assert job_from_dict(job.to_dict()) == job


@pytest.mark.parametrize(
    "walk",
    [
        {"kind": "interpolate", "frames": 20},
        {"kind": "interpolate", "easing": "cosine", "keyframes": [{}, {"at": 3, "easing": "ease_in_out"}, {"at": 19}]},
    ],
)
def test_the_table_of_a_job_alone_gives_its_own_frames(walk):
    job = make_job(walk)
    table = walk_table(job)
    alone = Trajectory(job, keys(3))
    p = alone.params(0, job.num_frames)
    np.testing.assert_allclose(table, p["segment"] + p["t"], rtol=0, atol=1e-12)
    timed = Trajectory(job, keys(3), timing=table)
    np.testing.assert_allclose(timed.frames(0, job.num_frames)[0], alone.frames(0, job.num_frames)[0], atol=1e-5)


@pytest.mark.parametrize("timed", [False, True], ids=["keyframes", "table"])
def test_a_range_alone_equals_the_same_frames_of_the_whole_walk(timed):
    job = make_job(
        {"kind": "interpolate", "method": "slerp", "keyframes": [{"easing": "cosine"}, {"at": 7}, {"at": 30}]},
        noise={"kind": "slerp"},
    )
    weights = np.random.default_rng(1).random(job.num_frames)

    def trajectory():
        return Trajectory(job, keys(3), timing=walk_table(job, weights) if timed else None)

    enc, noise = trajectory().frames(0, job.num_frames)
    for start, stop in ((0, 1), (5, 12), (29, 31), (4, 4)):
        e, n = trajectory().frames(start, stop)
        np.testing.assert_array_equal(e, enc[start:stop])
        np.testing.assert_array_equal(n, noise[start:stop])


@pytest.mark.parametrize(
    "table,reason",
    [
        (np.linspace(0, 2, 10), "one per frame"),
        (np.linspace(0, 1, 11), "from 0 to 2"),
        (np.r_[np.linspace(0, 2, 10), 1.0], "without going back"),
        (np.r_[np.nan, np.linspace(0, 2, 10)], "finite"),
    ],
)
def test_a_table_that_does_not_fit_the_walk_is_refused(table, reason):
    job = make_job({"kind": "interpolate", "frames": 11})
    with pytest.raises(ValueError, match=reason):
        Trajectory(job, keys(3), timing=table)


# ---------------------------------------------------------------------------- the maths of music timing


def test_weights_advance_the_walk_between_pins_in_proportion():
    job = make_job({"kind": "interpolate", "keyframes": [{}, {"at": 4}, {"at": 8}]})
    w = np.array([9.0, 1, 2, 3, 4, 5, 5, 5, 5])  # the step into frame j is w[j]; w[0] moves nothing
    u = progress(job, w)
    np.testing.assert_allclose(u, [0, 0.1, 0.3, 0.6, 1, 1.25, 1.5, 1.75, 2], atol=1e-15)
    assert u[4] == 1.0 and u[8] == 2.0  # pinned exactly


def test_frame_energy_does_not_drift_over_an_hour():
    rate, fps = 22050 / 512, 24
    hour = int(3600 * rate)
    for j in (10, hour // 2 + 3, hour - 40):  # an impulse early, midway, near the end
        env = np.zeros(hour)
        env[j] = 1.0
        energy = frame_energy(env, rate, fps, int(3600 * fps))
        assert int(np.argmax(energy)) == np.floor(j / rate * fps + 0.5)
        assert energy.sum() / fps == pytest.approx(1 / rate)  # every bit of energy lands in some frame
    # Frame 0's window starts half a frame before 0 s, where there is no sound: only it reads less.
    np.testing.assert_allclose(frame_energy(np.full(500, 3.0), rate, fps, 200)[1:], 3.0)


def test_release_keeps_the_peak_on_the_beat_and_the_floor_keeps_quiet_parts_moving():
    x = np.zeros(20)
    x[5] = 1.0
    y = release(x, 0.25, 24)
    assert np.argmax(y) == 5 and y[4] == 0 and np.all(np.diff(y[5:]) < 0)
    np.testing.assert_allclose(y[5:], np.exp(-np.arange(15) / 6))  # e^(-1) after 0.25 s = 6 frames
    split = release(np.r_[0, 1.0, 0.7, 0], 0.25, 24)  # a beat's energy over two frames: the peak stays first
    assert np.argmax(split) == 1
    np.testing.assert_array_equal(release(x, 0, 24), x)
    w = step_weights(np.r_[np.zeros(10), np.ones(10)], 0.2)
    assert w.min() == pytest.approx(0.2 * w.mean())
    np.testing.assert_array_equal(step_weights(np.zeros(5), 0.2), np.ones(5))


def clicks_wav(path: Path, clicks: list[float], seconds: float, rate: int = 22050) -> Path:
    """A quiet sustained chord (which HPSS sets aside) with short noise bursts at `clicks` seconds."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    y = 0.1 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277 * t))
    rng = np.random.default_rng(0)
    for c in clicks:
        i = round(c * rate)
        y[i : i + 300] += 0.8 * rng.standard_normal(300) * np.exp(-np.arange(300) / 60)
    soundfile.write(path, y.astype(np.float32), rate)
    return path


def test_the_largest_steps_land_on_the_clicks(tmp_path):
    fps, clicks = 24, [0.55, 1.3, 2.02, 3.1, 3.85, 4.7]
    clicks_wav(tmp_path / "clicks.wav", clicks, 5.5)
    job = load_job(
        write_job(
            tmp_path,
            {
                "prompts": ["a", "b", "c"],
                "walk": {"kind": "interpolate", "keyframes": [{}, {"seconds": 2.5}, {}]},
                "timing": {"audio": "clicks.wav", "fps": fps, "smoothing": 0.1, "floor": 0.1},
                "model": {"width": SIZE, "height": SIZE},
            },
        )
    )
    assert job.num_frames == round(5.5 * fps) and job.walk.keyframes[1].frame == 60
    env, rate = envelope(job.audio_file())
    table = walk_table(job, music_weights(job.timing, env, rate, job.num_frames))
    assert needs_table(job) and np.array_equal(job_table(job, (env, rate)), table)
    with pytest.raises(ValueError, match="needs the soundtrack's envelope"):
        job_table(job)
    steps = np.r_[0.0, np.diff(table)]  # steps[k]: the step into frame k
    # The large steps: local maxima of more than twice the median step (a click's energy may fall into two frames).
    peaks = [
        k
        for k in range(1, len(steps) - 1)
        if steps[k - 1] < steps[k] >= steps[k + 1] and steps[k] > 2 * np.median(steps)
    ]
    expected = [round(c * fps) for c in clicks]
    print(f"\nclick frames {expected}, largest steps arrive at {peaks}")
    assert len(peaks) == len(clicks) and all(abs(a - b) <= 1 for a, b in zip(peaks, expected, strict=True))
    assert table[60] == 1.0 and table[-1] == 2.0  # the keyframe and the end stay pinned
    assert steps[1:].min() > 0  # the floor: never still


def test_an_mp3_soundtrack_is_read_through_librosa(tmp_path):
    wav = clicks_wav(tmp_path / "c.wav", [0.5], 1.0)
    mp3 = tmp_path / "c.mp3"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(wav), "-c:a", "libmp3lame", str(mp3)], check=True
    )
    assert probe(mp3).duration == pytest.approx(1.0, abs=0.06)
    env, rate = envelope(mp3)
    assert abs(np.argmax(env) / rate - 0.5) < 0.06


# ---------------------------------------------------------------------------- the job file


def test_a_timed_job_round_trips_without_its_soundtrack(tmp_path):
    clicks_wav(tmp_path / "beat.wav", [0.5], 2.0)
    job = load_job(
        write_job(
            tmp_path,
            {"prompts": ["a", "b"], "walk": {"kind": "interpolate"}, "timing": {"audio": "beat.wav", "fps": 10}},
        )
    )
    assert job.num_frames == 20 and job.timing.duration == 2.0 and len(job.timing.sha256) == 64
    assert job.outputs.files == {} and job.audio_file() == tmp_path / "beat.wav"
    (tmp_path / "beat.wav").unlink()  # a manifest's job records duration and sha256: no file needed
    again = job_from_dict(job.to_dict(), source="manifest")
    assert again == job and again.fingerprint() == job.fingerprint()


def test_the_fingerprint_follows_the_soundtracks_content(tmp_path):
    clicks_wav(tmp_path / "beat.wav", [0.5], 2.0)
    data = {"prompts": ["a", "b"], "walk": {"kind": "interpolate"}, "timing": {"audio": "beat.wav", "fps": 10}}
    before = load_job(write_job(tmp_path, data)).fingerprint()
    clicks_wav(tmp_path / "beat.wav", [1.5], 2.0)
    assert load_job(write_job(tmp_path, data)).fingerprint() != before


BASE = {"prompts": ["a", "b", "c"], "walk": {"kind": "interpolate", "frames": 10}}


def bad(**sections) -> dict:
    return {**BASE, **sections}


BAD = [
    (bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3}]}), "walk.keyframes", "a list of 3 entries"),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{"at": 1}, {"at": 3}, {"at": 9}]}),
        "walk.keyframes[0]",
        "must be at frame 0, got frame 1",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 5}, {"at": 5}]}),
        "walk.keyframes[2]",
        "must come after keyframe 1 (frame 5), got frame 5",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3}, {"at": 9}], "frames": 12}),
        "walk.keyframes[2]",
        "must be at its last frame, 11, got frame 9",
    ),
    (bad(walk={"kind": "interpolate", "keyframes": [{}, {}, {"at": 9}]}), "walk.keyframes[1]", "needs its position"),
    (bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3}, {}]}), "walk.keyframes[2]", "needs its position"),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"seconds": 1}, {"at": 40}]}),
        "walk.keyframes[1].seconds",
        "needs timing.fps",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3, "seconds": 1}, {"at": 9}]}),
        "walk.keyframes[1]",
        "not both",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3}, {"at": 9, "easing": "cosine"}]}),
        "walk.keyframes[2].easing",
        "no segment follows it",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3, "easing": "bounce"}, {"at": 9}]}),
        "walk.keyframes[1].easing",
        "unknown easing 'bounce'",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3}, {"at": 2_000_000}]}),
        "walk.keyframes[2].at",
        "at most 999,999",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3, "frame": 3}, {"at": 9}]}),
        "walk.keyframes[1].frame",
        "unknown key",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{"seed": 1}, {"at": 3}, {"at": 9}]}),
        "walk.keyframes[0].seed",
        "set noise.kind: slerp",
    ),
    (
        bad(
            walk={"kind": "interpolate", "keyframes": [{"seed": 1}, {"at": 3}, {"at": 9}]},
            noise={"kind": "slerp", "seeds": [1, 2, 3]},
        ),
        "noise.seeds",
        "in one place",
    ),
    (
        bad(walk={"kind": "interpolate", "keyframes": [{}, {"at": 3}, {"at": 9}], "loop": True}),
        "walk.loop",
        "takes no keyframes",
    ),
    (
        bad(walk={"kind": "text_walk", "frames": 5, "keyframes": []}, prompts=["a"]),
        "walk.keyframes",
        "does not apply to a text_walk walk",
    ),
    (
        bad(timing={"fps": 24}, walk={"kind": "noise_circle", "frames": 5}, prompts=["a"]),
        "timing",
        "times an interpolate walk",
    ),
    (bad(timing={"audio": "x.wav"}), "timing.fps", "missing"),
    (bad(timing={"fps": 0}), "timing.fps", "must be >= 1"),
    (bad(timing={"fps": 24, "floor": 0.5}), "timing.floor", "applies only with timing.audio"),
    (bad(timing={"fps": 24, "audio": "no-such.wav"}), "timing.audio", "no-such.wav: cannot read"),
    (bad(timing={"fps": 24, "audio": "job.yaml"}), "timing.audio", "not audio raywalk can read"),
    (bad(timing={"fps": 10, "audio": "beat.wav", "floor": 2}), "timing.floor", "at most 1"),
    (bad(timing={"fps": 10, "audio": "beat.wav", "smoothing": -1}), "timing.smoothing", "must be >= 0"),
    (bad(timing={"fps": 10, "audio": "beat.wav"}), "walk.frames", "is 10, but timing.audio lasts 2.000 s, 20 frames"),
    (bad(timing={"fps": 10, "audio": "beat.wav", "duration": 3}), "timing.duration", "lasts only 2.000 s"),
    (bad(timing={"fps": 10, "audio": "beat.wav", "sha256": "0" * 64}), "timing.sha256", "is not that of beat.wav"),
    (bad(timing={"fps": 10}, outputs={"mp4": {"fps": 24}}), "outputs.mp4.fps", "must equal timing.fps (10)"),
    (
        bad(
            timing={"fps": 10, "audio": "beat.wav"},
            walk={"kind": "interpolate"},
            outputs={"mp4": {"rubber_band": True}},
        ),
        "outputs.mp4.rubber_band",
        "does not play backwards",
    ),
    (bad(walk={"kind": "interpolate", "frames": 10, "pacing": "fast"}), "walk.pacing", "unknown pacing 'fast'"),
    (bad(pacing={"samples": 5}), "pacing", "apply only to walk.pacing: perceptual"),
    (bad(walk={"kind": "interpolate", "frames": 1, "pacing": "perceptual"}), "walk.pacing", "at least 2 frames"),
    (
        bad(walk={"kind": "interpolate", "frames": 10, "pacing": "perceptual"}, noise={"kind": "per_frame"}),
        "walk.pacing",
        "per_frame noise",
    ),
    (
        bad(walk={"kind": "interpolate", "frames": 10, "pacing": "perceptual"}, pacing={"samples": 1}),
        "pacing.samples",
        "must be >= 2",
    ),
    (
        bad(walk={"kind": "interpolate", "frames": 10, "pacing": "perceptual"}, pacing={"samples": 5000}),
        "pacing.samples",
        "at most 1,000",
    ),
    (
        bad(walk={"kind": "interpolate", "frames": 10, "pacing": "perceptual"}, pacing={"size": 192}),
        "pacing.size",
        "divided by a whole factor",
    ),
    (
        bad(walk={"kind": "interpolate", "frames": 10, "pacing": "perceptual"}, pacing={"steps": 0}),
        "pacing.steps",
        "must be >= 1",
    ),
]


@pytest.mark.parametrize("data,field,reason", BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_bad_timing_keyframes_and_pacing_fail_with_one_line(tmp_path, data, field, reason):
    clicks_wav(tmp_path / "beat.wav", [0.5], 2.0)
    path = write_job(tmp_path, data)
    with pytest.raises(JobError) as err:
        load_job(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {field}: ") and reason in message, message
    assert "\n" not in message
