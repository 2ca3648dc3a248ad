"""Draw docs/pictures-contact.png: the contact sheet of a picture walk, rendered through Ray by `raywalk render`.

The walk is jobs/sd3/photo-to-painting.yaml shrunk to Stable Diffusion 3's tiny random configuration
(64x64, 3 steps, 12 frames): RANDOM WEIGHTS, so the frames are noise, but the sheet's header shows the
picture the walk starts from and the run's index how each frame started (strength, starting step).
`--smoke` renders 4 frames into a temp dir (docs/ untouched).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
JOB = REPO / "jobs" / "sd3" / "photo-to-painting.yaml"


def shrunk_job(frames: int) -> dict:
    """The photo-to-painting job at 64x64 on the tiny random SD3 model, its picture by absolute path."""
    job = yaml.safe_load(JOB.read_text())
    picture = job["walk"]["keyframes"][0]
    picture["image"] = str((JOB.parent / picture["image"]).resolve())
    job["walk"]["frames"] = frames
    job["model"] |= {"width": 64, "height": 64, "steps": 3, "weights": "random", "batch_size": 4}
    job["model"]["options"] = {"config": "tiny"}
    job["chunking"] = {"chunk_size": 4}
    job["workers"] = {"gpus": 0, "cpus": 1}
    job["outputs"] = {"contact_sheet": {"every": 1, "columns": 6, "tile": 96}}
    return job


def main(out: Path, frames: int) -> None:
    with tempfile.TemporaryDirectory(prefix="raywalk-pictures-") as tmp:
        job_file, run = Path(tmp) / "photo-to-painting.yaml", Path(tmp) / "run"
        job_file.write_text(yaml.safe_dump(shrunk_job(frames)))
        raywalk = Path(sys.executable).parent / "raywalk"
        subprocess.run([str(raywalk), "render", str(job_file), "--out", str(run)], check=True)
        rows = pq.read_table(run / "frames.parquet", columns=["frame", "strength", "start_step"]).to_pylist()
        for row in sorted(rows, key=lambda r: r["frame"]):
            print(f"frame {row['frame']:2d}: strength {row['strength']:.3f}, starting step {row['start_step']}")
        shutil.copy(run / "sd3-photo-to-painting-contact.png", out)
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "docs" / "pictures-contact.png")
    parser.add_argument("--smoke", action="store_true", help="4 frames into a temp dir instead (docs/ untouched)")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="raywalk-pictures-figure-") as tmp:
            main(Path(tmp) / "pictures-contact.png", 4)
    else:
        main(args.out, 12)
