"""Benchmark: raywalk's render pipeline against the ideal, driver memory, resume time.

    python bench/pipeline.py                  # the numbers in the README
    python bench/pipeline.py --quick          # a smaller run
    python bench/pipeline.py --smoke          # the smallest: 1 worker, a few frames (does it run)
    python bench/pipeline.py --resume-only    # only 3., best of --repeat runs of each resume

1. Throughput: a renderer that spends a fixed time per frame (like a GPU)
   renders 512x512 frames with 1, 2, 4 and 8 workers (fake GPUs, one per
   worker); frames/s of the render loop against the ideal, workers / (s/frame).
2. Driver memory: peak RSS of the driver process for 1,000 and 20,000 frames.
3. Resume of a finished 10,000-frame run: wall time of `raywalk resume`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only; drivers need no shared token file


def job_file(directory: Path, frames: int, size: int, seconds_per_frame: float, chunk: int, batch: int) -> Path:
    path = directory / f"bench-{frames}-{size}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "prompts": ["a", "b"],
                "walk": {"kind": "interpolate", "frames": frames},
                "noise": {"kind": "per_frame", "seed": 1},
                "model": {
                    "renderer": "timed_renderer:TimedRenderer",
                    "width": size,
                    "height": size,
                    "steps": 1,
                    "batch_size": batch,
                    "options": {"seconds_per_frame": seconds_per_frame},
                },
                "chunking": {"chunk_size": chunk, "in_flight": 2},
                "workers": {"gpus": 1, "cpus": 0.1},
            }
        )
    )
    return path


def throughput(workers: int, seconds_per_frame: float, frames_per_worker: int, tmp: Path) -> dict:
    from raywalk import load_job
    from raywalk.exec.driver import WorkerSpec, render
    from raywalk.exec.progress import Progress

    frames = workers * frames_per_worker
    job = load_job(job_file(tmp, frames, 512, seconds_per_frame, chunk=8, batch=2))
    log = io.StringIO()
    outcome = render(
        job,
        str(tmp / f"run-{workers}"),
        workers=WorkerSpec(count=workers, gpus=1, cpus=0.1),
        progress=Progress(frames, 0, stream=log, bar=False),
    )
    assert outcome.complete
    chunks = [json.loads(line) for line in log.getvalue().splitlines() if '"chunk"' in line]
    elapsed = chunks[-1]["elapsed"]
    fps, ideal = frames / elapsed, workers / seconds_per_frame
    return {
        "workers": workers,
        "frames": frames,
        "seconds": round(elapsed, 2),
        "frames_per_s": round(fps, 3),
        "ideal_frames_per_s": round(ideal, 3),
        "of_ideal": f"{100 * fps / ideal:.1f}%",
    }


def driver_memory(frames: int, address: str, tmp: Path) -> dict:
    """Peak RSS of a `raywalk render` driver process (a child, so its peak is its own)."""
    job = job_file(tmp, frames, 64, 0.0, chunk=50, batch=10)
    code = (
        "import resource, sys\nfrom raywalk.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "render",
            str(job),
            "--out",
            str(tmp / f"mem-{frames}"),
            "--address",
            address,
            "--workers",
            "2",
            "--gpus-per-worker",
            "1",
            "--cpus-per-worker",
            "0.5",
        ],
        capture_output=True,
        text=True,
    )
    peak = int(result.stderr.split("MAXRSS")[-1])
    return {
        "frames": frames,
        "driver_peak_rss_mb": round(peak / 1024, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def resume_finished(frames: int, tmp: Path, repeat: int = 1) -> dict:
    """Build a finished run of `frames` frames through the store, then time `raywalk resume` on it (the first
    resume once; the no-op ones the best of `repeat` runs each)."""
    import numpy as np

    from raywalk import load_job
    from raywalk.exec.driver import run_manifest
    from raywalk.exec.worker import encode_png, versions
    from raywalk.run.manifest import new_manifest
    from raywalk.run.store import RunStore

    job = load_job(job_file(tmp, frames, 64, 0.0, chunk=16, batch=4))
    store = RunStore(str(tmp / "finished"))
    manifest = run_manifest(new_manifest(job), {"random_weights": True, "renderer": {}, "versions": versions()})
    store.write_manifest(manifest)
    store.write_keyframes(np.zeros((2, 77, 768), np.float32))
    png = encode_png(np.zeros((64, 64, 3), np.uint8))
    for chunk in range(job.num_chunks):
        rows = [{**store.write_frame(f, png), "frame": f} for f in job.chunk_frames(chunk)]
        store.write_chunk_index(
            chunk,
            {
                "frame": [r["frame"] for r in rows],
                "file": [r["file"] for r in rows],
                "sha256": [r["sha256"] for r in rows],
                "bytes": [r["bytes"] for r in rows],
                "width": [64] * len(rows),
                "height": [64] * len(rows),
                "chunk": [chunk] * len(rows),
                "attempt": [1] * len(rows),
                "node": ["n"] * len(rows),
                "worker": ["w"] * len(rows),
                "seconds": [0.0] * len(rows),
            },
            run_id=manifest.run_id,
            fingerprint=manifest.fingerprint,
        )
    timings = {}
    # The first resume of a run that was never assembled also measures its smoothness (decoding every frame,
    # once); the next ones only check the frames and rebuild the report.
    for name, flag, runs in (("first_resume", [], 1), ("resume", [], repeat), ("resume_verify", ["--verify"], repeat)):
        best = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(["raywalk", "resume", str(tmp / "finished"), *flag], check=True, capture_output=True)
            best = min(best, time.perf_counter() - started)
        timings[f"{name}_seconds"] = round(best, 2)
    return {"frames": frames, **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer frames and worker counts")
    parser.add_argument("--smoke", action="store_true", help="1 worker, 4 frames, 40-frame runs: does it run")
    parser.add_argument("--seconds-per-frame", type=float, default=0.5)
    parser.add_argument("--resume-only", action="store_true", help="only the resume of a finished run (no Ray)")
    parser.add_argument("--repeat", type=int, default=1, help="with --resume-only: runs of each resume, best kept")
    args = parser.parse_args()
    if args.smoke:
        args.seconds_per_frame = 0.01
    sizes = (
        ((1,), 4, (40,), 40)
        if args.smoke
        else ((1, 2), 16, (500, 2_000), 1_000)
        if args.quick
        else ((1, 2, 4, 8), 48, (1_000, 20_000), 10_000)
    )
    worker_counts, frames_per_worker, memory_frames, resume_frames = sizes
    if args.resume_only:
        with tempfile.TemporaryDirectory(prefix="raywalk-bench-") as tmp_dir:
            print(f"# resume of a finished run (CLI, end to end, no Ray needed), best of {args.repeat}")
            print(json.dumps(resume_finished(resume_frames, Path(tmp_dir), args.repeat)), flush=True)
        return
    import ray
    from chaos import start_head, stop_head  # a private Ray on free ports, stopped by its process group

    with tempfile.TemporaryDirectory(prefix="raywalk-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        head, address = start_head(tmp, cpus=2, gpus=8)
        try:
            ray.init(address=address, logging_level="warning")
            print(f"# throughput: 512x512 frames, {args.seconds_per_frame} s/frame per worker, chunks of 8, batch 2")
            for workers in worker_counts:
                print(json.dumps(throughput(workers, args.seconds_per_frame, frames_per_worker, tmp)), flush=True)
            print("# driver memory (a separate driver process joining the same cluster)")
            for frames in memory_frames:
                print(json.dumps(driver_memory(frames, address, tmp)), flush=True)
            print("# resume of a finished run (CLI, end to end, no Ray needed)")
            print(json.dumps(resume_finished(resume_frames, tmp)), flush=True)
        finally:
            ray.shutdown()
            stop_head(head)
    print(f"# peak RSS of this benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


if __name__ == "__main__":
    main()
