"""Benchmark: raywalk's streamed GIF/MP4 assembly against the tutorial's `export_as_gif`.

Writes one synthetic run (512×512 frames with gradients, moving shapes and
noise, so that palettes and compression have work to do) and assembles its
first N frames for each N. Every case runs in a fresh subprocess, so its peak
resident memory (getrusage maxrss, which includes the ~130 MB of imported
libraries) is its own; the MP4 case also reports ffmpeg's peak, and GIF cases
the mean colour error of their first frames against the PNGs (0-255 scale).

    python bench/assemble.py                       # 200 and 2,000 frames, 512×512
    python bench/assemble.py --frames 50 100 --size 128 --skip-tutorial
    python bench/assemble.py --smoke               # 5 frames of 64×64: does it run
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

import numpy as np
from PIL import Image

from raywalk import job_from_dict
from raywalk.outputs.gif import write_gif
from raywalk.outputs.mp4 import write_mp4
from raywalk.run.manifest import new_manifest
from raywalk.run.store import RunStore, frame_name

CHUNK = 50


def export_as_gif(filename, images, frames_per_second=10, rubber_band=False):
    # Verbatim from the keras.io tutorial.
    if rubber_band:
        images += images[2:-1][::-1]
    images[0].save(
        filename,
        save_all=True,
        append_images=images[1:],
        duration=1000 // frames_per_second,
        loop=0,
    )


def synthetic_frame(frame: int, size: int) -> np.ndarray:
    """A frame that changes smoothly with its number, like a latent walk, with some grain."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = frame / 60
    r = 0.5 + 0.5 * np.sin(2 * np.pi * (x * 3 + t))
    g = 0.5 + 0.5 * np.sin(2 * np.pi * (y * 2 - t * 0.7) + x * 4)
    b = 0.5 + 0.5 * np.cos(2 * np.pi * np.hypot(x - 0.5 - 0.3 * np.sin(t), y - 0.5) * 5)
    img = np.stack([r, g, b], axis=-1) * 230
    img += np.random.default_rng(frame).normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_run(path: str, frames: int, size: int) -> None:
    store = RunStore(path)
    manifest = new_manifest(job_from_dict({"name": "bench", "prompts": ["a", "b"], "walk": {"frames": frames}}))
    store.write_manifest(manifest)
    for chunk, start in enumerate(range(0, frames, CHUNK)):
        rows = []
        for frame in range(start, min(start + CHUNK, frames)):
            buf = io.BytesIO()
            Image.fromarray(synthetic_frame(frame, size)).save(buf, "PNG")
            rows.append({"frame": frame, **store.write_frame(frame, buf.getvalue())})
        n = len(rows)
        store.write_chunk_index(
            chunk,
            {
                **{k: [r[k] for r in rows] for k in ("frame", "file", "sha256", "bytes")},
                "width": [size] * n,
                "height": [size] * n,
                "chunk": [chunk] * n,
                "attempt": [0] * n,
                "node": ["bench"] * n,
                "worker": ["bench"] * n,
                "seconds": [0.0] * n,
            },
            run_id=manifest.run_id,
            fingerprint=manifest.fingerprint,
        )


def gif_error(run: str, gif: str, frames: int = 10) -> float:
    """Mean absolute RGB difference between a GIF's first frames and their PNGs (palette loss)."""
    im = Image.open(gif)
    errors = []
    for f in range(min(frames, im.n_frames)):
        im.seek(f)
        png = np.asarray(Image.open(os.path.join(run, "frames", frame_name(f))).convert("RGB"), dtype=np.float32)
        errors.append(np.abs(np.asarray(im.convert("RGB"), dtype=np.float32) - png).mean())
    return float(np.mean(errors))


def run_case(case: str, run: str, frames: int) -> dict[str, float]:
    """One measurement, in this (fresh) process."""
    store = RunStore(run)
    start = time.perf_counter()
    if case == "raywalk-gif":
        out = write_gif(store, frames, f"bench-{frames}.gif", fps=10)
    elif case == "raywalk-mp4":
        out = write_mp4(store, frames, f"bench-{frames}.mp4", fps=24, quality=8)
    else:
        arrays = [
            np.asarray(Image.open(os.path.join(run, "frames", frame_name(f))).convert("RGB")) for f in range(frames)
        ]
        out = os.path.join(run, f"tutorial-{frames}.gif")
        export_as_gif(out, [Image.fromarray(img) for img in arrays], frames_per_second=10)
    seconds = time.perf_counter() - start
    return {
        "colour_error": gif_error(run, out) if out.endswith(".gif") else None,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "child_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "output_mb": os.path.getsize(out) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--skip-tutorial", action="store_true", help="leave out export_as_gif (needs GBs)")
    parser.add_argument("--run", help="reuse or keep the synthetic run here (default: a temp dir)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="5 frames of 64x64, every case: does it run")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.size = [5], 64

    if args.case:
        print(json.dumps(run_case(args.case, args.run, args.frames[0])))
        return

    with tempfile.TemporaryDirectory(prefix="raywalk-bench-") as tmp:
        run = args.run or os.path.join(tmp, "run")
        needed = max(args.frames)
        store = RunStore(run)
        if store.read_manifest() is None or store.missing_frames(needed):
            start = time.perf_counter()
            make_run(run, needed, args.size)
            print(f"wrote {needed} frames of {args.size}x{args.size} in {time.perf_counter() - start:.0f} s")
        cases = ["raywalk-gif", "raywalk-mp4"] + ([] if args.skip_tutorial else ["tutorial-gif"])
        print(
            f"{'frames':>6}  {'case':<13} {'seconds':>8} {'frames/s':>8} {'peak RSS MB':>11} "
            f"{'ffmpeg MB':>9} {'output MB':>9} {'GIF error':>9}"
        )
        for frames in args.frames:
            for case in cases:
                proc = subprocess.run(
                    [sys.executable, __file__, "--case", case, "--run", run, "--frames", str(frames)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                ffmpeg = f"{r['child_peak_rss_mb']:9.0f}" if case == "raywalk-mp4" else f"{'-':>9}"
                error = f"{'-':>9}" if case == "raywalk-mp4" else f"{r['colour_error']:9.2f}"
                print(
                    f"{frames:>6}  {case:<13} {r['seconds']:8.1f} {frames / r['seconds']:8.1f} "
                    f"{r['peak_rss_mb']:11.0f} {ffmpeg} {r['output_mb']:9.1f} {error}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
