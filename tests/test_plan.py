"""`raywalk plan`: every job plans; counts and estimates are right; over-long prompts are refused."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from raywalk import load_job
from raywalk.cli import main
from raywalk.core.plan import estimate, make_plan

JOBS = sorted((Path(__file__).resolve().parent.parent / "jobs").glob("**/*.yaml"))


@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_every_job_in_jobs_plans(path):
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    job = load_job(path)
    assert re.search(rf"^frames\s+{job.num_frames}$", result.output, re.M)
    for name in job.output_files().values():
        assert name in result.output


def test_plan_names_each_models_denoiser_and_its_guidance_passes():
    by_stem = {p.stem: p for p in JOBS}
    sd3, turbo = (CliRunner().invoke(main, ["plan", str(by_stem[n])]) for n in ("dog-to-cat-64", "dog-to-cat-64-turbo"))
    assert "MMDiT evaluations 3584 (64 frames x 28 steps x 2 guidance passes)" in sd3.output
    assert "MMDiT evaluations 256 (64 frames x 4 steps x 1 guidance pass)" in turbo.output  # guidance 0: one pass
    kerascv = CliRunner().invoke(main, ["plan", str(by_stem["dog-to-fruit-5"])])
    assert "UNet evaluations  500 (5 frames x 50 steps x 2 guidance passes)" in kerascv.output


def test_plan_counts_the_tutorials_150_frame_walk():
    job = load_job(next(p for p in JOBS if p.stem == "dog-to-fruit-150"))
    p = make_plan(job)
    assert (p.frames, p.chunks, p.batches, p.padded_frames) == (150, 10, 50, 150)
    assert p.unet_evaluations == 150 * 25 * 2


def test_padding_is_counted_per_chunk(tmp_path):
    path = tmp_path / "j.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "prompts": ["a", "b"],
                "walk": {"kind": "interpolate", "frames": 10},
                "model": {"batch_size": 4, "steps": 5},
                "chunking": {"chunk_size": 6},
            }
        )
    )
    p = make_plan(load_job(path))
    assert (p.chunks, p.batches, p.padded_frames) == (2, 3, 12)  # chunks of 6 and 4: 2 + 1 batches


def test_estimate_deals_whole_chunks_to_workers():
    job = load_job(next(p for p in JOBS if p.stem == "dog-to-fruit-150"))
    e = estimate(job, make_plan(job), seconds_per_step=0.2, workers=4)
    # 10 chunks of 5 batches on 4 workers: the busiest takes 3 chunks = 15 batches x 25 steps.
    assert e.wall_seconds == pytest.approx(15 * 25 * 0.2)
    assert e.gpu_hours == pytest.approx(75 * 4 / 3600)
    result = CliRunner().invoke(main, ["plan", str(JOBS[0]), "--seconds-per-step", "0.2", "--workers", "4"])
    assert re.search(r"^estimate .* on 4 worker\(s\) at 0.2 s/step, \d+\.\d\d GPU-hours$", result.output, re.M)


def test_over_long_prompt_is_refused_at_plan_time(tmp_path):
    long_prompt = "a very detailed painting of " + " and ".join(f"a tiny red fox number {i}" for i in range(20))
    path = tmp_path / "long.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "prompts": ["a dog", long_prompt],
                "walk": {"kind": "interpolate", "frames": 3},
                "model": {"weights": "random"},
            }
        )
    )
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 2
    assert "tokens" in result.stderr and "77" in result.stderr and "a very detailed painting" in result.stderr
    assert result.stderr.count("\n") == 1


def test_unknown_renderer_option_is_refused_at_plan_time(tmp_path):
    path = tmp_path / "opt.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "prompts": ["a", "b"],
                "walk": {"kind": "interpolate", "frames": 3},
                "model": {"renderer": "doubles:FakeRenderer", "options": {"sped": 2}},
            }
        )
    )
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 2 and "does not take option 'sped'" in result.stderr


def test_calibration_measures_a_worker(ray_connected, tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "prompts": ["a", "b"],
                "walk": {"kind": "interpolate", "frames": 8},
                "model": {
                    "renderer": "doubles:FakeRenderer",
                    "width": 64,
                    "height": 64,
                    "steps": 2,
                    "batch_size": 2,
                    "options": {"seconds_per_frame": 0.25},
                },
                "workers": {"gpus": 0, "cpus": 0.5},
            }
        )
    )
    result = CliRunner().invoke(main, ["plan", str(path), "--calibrate", "--workers", "2"])
    assert result.exit_code == 0, result.output
    seconds = float(re.search(r"at ([\d.]+) s/step", result.output).group(1))
    assert seconds == pytest.approx(0.25, rel=0.3)  # 2 frames x 0.25 s over 2 steps


# `raywalk plan` in a process of its own, as a user runs it: TensorFlow's start-up lines would show.
PLAN = """
import sys
from raywalk.cli import main
try:
    main(["plan", sys.argv[1]])
finally:
    print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def run_plan(path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # TensorFlow as loud as it gets
    return subprocess.run(
        [sys.executable, "-c", PLAN, str(path)], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_plan_is_quiet_and_never_imports_tensorflow(tmp_path):
    smoke = yaml.safe_load(next(p for p in JOBS if p.stem == "smoke").read_text())
    result = run_plan(next(p for p in JOBS if p.stem == "smoke"))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines()[-1] == "tensorflow imported: False"

    smoke["prompts"][1] = "a very " * 40 + "long prompt"
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(smoke))
    result = run_plan(path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        (
            "raywalk: error: prompt 'a very a very a very a very a very a very a very a very a...' is 84 CLIP tokens"
            " long; Stable Diffusion takes at most 77 (start and end tokens included)"
        )
    ]
    assert result.stdout.splitlines() == ["tensorflow imported: False"]


def test_plan_prints_what_it_cannot_check_here(tmp_path):
    path = tmp_path / "remote.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "prompts": ["a", "b"],
                "walk": {"kind": "interpolate", "frames": 3},
                "model": {"weights": str(tmp_path / "on-the-cluster")},
            }
        )
    )
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        f"unchecked         weights directory {str(tmp_path / 'on-the-cluster')!r} is not on this machine;"
        " render checks it on the workers"
    )


def test_plan_says_unchecked_for_an_sd3_preset_it_cannot_download_here(tmp_path):
    # A proxy that refuses every connection: the download host is unreachable on any machine, for real.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    env |= {"https_proxy": proxy, "HTTPS_PROXY": proxy}
    job = next(p for p in JOBS if p.parent.name == "sd3" and p.stem == "dog-to-cat-64-turbo")
    result = subprocess.run(
        [sys.executable, "-m", "raywalk.cli", "plan", str(job)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith(
        "unchecked         weights: download needs stable_diffusion_3.5_large_turbo from www.kaggle.com,"
        " which this machine cannot reach ("
    ), result.stdout
    assert last.endswith(
        "run `raywalk weights stage DIR --preset stable_diffusion_3.5_large_turbo` on a machine with internet,"
        " then set `weights: DIR`; render checks it on the workers"
    )

    data = yaml.safe_load(job.read_text())
    data["model"]["weights"] = str(tmp_path / "on-the-cluster")  # a staged preset directory elsewhere
    elsewhere = tmp_path / "staged.yaml"
    elsewhere.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["plan", str(elsewhere)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        f"unchecked         preset directory {str(tmp_path / 'on-the-cluster')!r} is not on this machine;"
        " render checks it on the workers"
    )
