"""Draw docs/pacing.png: the walk parameter of uniform and perceptual pacing, and what each does to the picture.

The path is synthetic (no model): two images blended along a steep sigmoid in segment 1 (the picture
holds, then changes all at once, as interpolations between prompts often do) and linearly in segment 2.
A first pass of 9 images per segment is measured with raywalk.core.pacing's distance and inverted.

    python bench/pacing_figure.py [OUT]
    python bench/pacing_figure.py --smoke   # into a temp dir
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from raywalk import job_from_dict
from raywalk.core.pacing import PerceptualWarp, distances, max_jump, sample_points, smoothness
from raywalk.core.timing import walk_table

RNG = np.random.default_rng(0)
A = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)
_Y, _X = np.mgrid[:48, :64]
B = np.stack([_X * 4 % 256, _Y * 5 % 256, (_X + _Y) * 2 % 256], axis=-1).astype(np.uint8)


def image_at(u: float) -> np.ndarray:
    if u <= 1:
        low, high = 1 / (1 + np.exp(7)), 1 / (1 + np.exp(-7))
        w = (1 / (1 + np.exp(-14 * (u - 0.5))) - low) / (high - low)
    else:
        w = 2 - u
    return np.clip((1 - w) * A + w * B + 0.5, 0, 255).astype(np.uint8)


def main(out: Path) -> None:
    data = {"prompts": ["a", "b", "c"], "walk": {"kind": "interpolate", "frames": 61}}
    uniform_job = job_from_dict(data)
    paced_job = job_from_dict({**data, "walk": {**data["walk"], "pacing": "perceptual"}, "pacing": {"samples": 9}})
    samples = sample_points(paced_job.segments, 9)
    warp = PerceptualWarp.from_distances(distances(image_at(u) for u in samples), paced_job.segments, 9)
    tables = {"uniform": walk_table(uniform_job), "perceptual": walk_table(paced_job, warp=warp)}

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for (name, table), colour in zip(tables.items(), ("tab:grey", "tab:blue"), strict=True):
        d = distances(image_at(u) for u in table)
        left.plot(table, label=name, color=colour, lw=2)
        right.plot(
            np.arange(1, len(table)),
            d / d.mean(),
            color=colour,
            lw=2,
            label=f"{name}: smoothness {smoothness(d):.2f}, max/mean {max_jump(d):.2f}",
        )
    left.plot(
        np.arange(len(samples)) * 60 / (len(samples) - 1),
        samples,
        "o",
        color="tab:orange",
        ms=3,
        label="first pass (even u)",
    )
    left.set(xlabel="frame", ylabel="walk parameter u (prompt k at u = k)", title="where each frame sits on the walk")
    right.set(
        xlabel="frame", ylabel="change from the previous frame / mean", title="how much the picture changes per frame"
    )
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).parent.parent / "docs" / "pacing.png")
    parser.add_argument("--smoke", action="store_true", help="draw into a temp dir instead (docs/ untouched)")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="raywalk-pacing-") as tmp:
            main(Path(tmp) / "pacing.png")
    else:
        main(args.out)
