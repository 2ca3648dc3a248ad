"""Generate the pictures under jobs/images/ that the picture jobs start from, walk between or lock to.

Nothing is downloaded and nothing is photographed: each picture is drawn from seeded numpy arrays
with arithmetic only (no sin, exp or other library maths whose last bit may differ between CPUs),
drawn at twice the size and averaged 2×2 (antialiasing), then saved as PNG by Pillow. Running it
again writes the same bytes, so the committed files are this script's output and nothing else
(jobs/images/LICENSE: public domain, CC0).

- harbour.png (512×384): a harbour at dusk: sky, sun, clouds, hills, a lighthouse, sea, boats.
- still-life.png (512×512): fruit, a bowl and a vase on a wooden table.
- palette.png (512×512): an abstract patchwork of brushed colour, the style lock's palette.

    python bench/make_pictures.py [OUT_DIR]
    python bench/make_pictures.py --smoke   # into a temp dir; fails unless every file equals the committed one
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

COMMITTED = Path(__file__).resolve().parent.parent / "jobs" / "images"
Colour = tuple[float, float, float]


class Canvas:
    """A float RGB canvas at twice the output size, painted with soft-edged masks in [0, 1]."""

    def __init__(self, width: int, height: int) -> None:
        self.h, self.w = 2 * height, 2 * width
        self.y, self.x = np.mgrid[: self.h, : self.w].astype(np.float64) / 2  # output-pixel units
        self.rgb = np.zeros((self.h, self.w, 3))

    def paint(self, mask: np.ndarray, colour: Colour | np.ndarray) -> None:
        """Blend `colour` (one RGB, or one per pixel) over the canvas by `mask`."""
        m = np.clip(mask, 0.0, 1.0)[..., None]
        self.rgb = self.rgb * (1 - m) + np.asarray(colour, dtype=np.float64) * m

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        """A soft-edged ellipse mask (about one output pixel of edge)."""
        d = np.sqrt(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2)
        return np.clip((1 - d) * min(rx, ry), 0.0, 1.0)

    def polygon(self, points: list[tuple[float, float]]) -> np.ndarray:
        """A hard-edged mask of the convex polygon `points` (clockwise on screen); the 2×2 average softens it."""
        inside = np.ones((self.h, self.w), dtype=bool)
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
            inside &= (x1 - x0) * (self.y - y0) - (y1 - y0) * (self.x - x0) >= 0
        return inside.astype(np.float64)

    def below(self, profile: np.ndarray) -> np.ndarray:
        """The mask of everything below the curve `profile` (one y per output column)."""
        return (self.y >= np.repeat(profile, 2)[None, :]).astype(np.float64)

    def pixels(self) -> np.ndarray:
        """The canvas averaged 2×2 and rounded: uint8 (height, width, 3)."""
        r = self.rgb
        mean = (r[0::2, 0::2] + r[1::2, 0::2] + r[0::2, 1::2] + r[1::2, 1::2]) / 4
        return np.clip(np.round(mean), 0, 255).astype(np.uint8)


def gradient(t: np.ndarray, stops: list[tuple[float, Colour]]) -> np.ndarray:
    """Colours along `t` (any shape), linear between (position, colour) stops."""
    where = [s for s, _ in stops]
    return np.stack([np.interp(t, where, [c[i] for _, c in stops]) for i in range(3)], axis=-1)


def ridge(rng: np.random.Generator, width: int, base: float, height: float, knots: int) -> np.ndarray:
    """A smooth random skyline: `knots` random heights eased together with smoothstep, one y per column."""
    values = base - height * rng.random(knots + 1)
    u = np.arange(width) / width * knots
    i = np.minimum(u.astype(int), knots - 1)
    f = u - i
    s = f * f * (3 - 2 * f)
    return values[i] * (1 - s) + values[i + 1] * s


def harbour() -> np.ndarray:
    """512×384: a harbour at dusk."""
    rng = np.random.default_rng(20)
    c = Canvas(512, 384)
    horizon = 230.0
    sky = [(0.0, (28, 36, 92)), (0.45, (120, 72, 140)), (0.8, (236, 122, 88)), (1.0, (252, 190, 110))]
    c.paint(np.ones((c.h, c.w)), gradient(c.y / horizon, sky))
    sun_x, sun_y = 340.0, 196.0
    glow = 1 / (1 + ((c.x - sun_x) ** 2 + (c.y - sun_y) ** 2) / 1800)
    c.paint(0.55 * glow, (255, 214, 140))
    c.paint(c.ellipse(sun_x, sun_y, 26, 26), (255, 236, 180))
    for cx, cy, rx in ((110, 70, 70), (160, 60, 46), (400, 100, 60), (445, 92, 38)):
        c.paint(0.7 * c.ellipse(cx, cy, rx, rx / 4), (214, 150, 170))
    c.paint(c.below(ridge(rng, 512, horizon, 60, 7)), (92, 66, 110))
    c.paint(c.below(ridge(rng, 512, horizon + 2, 28, 11)), (62, 46, 84))
    sea = gradient((c.y - horizon) / (384 - horizon), [(0.0, (150, 96, 120)), (1.0, (22, 38, 78))])
    c.paint((c.y >= horizon).astype(np.float64), sea)
    for row in np.sort(rng.choice(np.arange(int(horizon) + 3, 380, 3), 40, replace=False)):
        spread = 6 + (row - horizon) * 0.5
        length = 30 + 60 * rng.random()
        band = (np.abs(c.y - row) < 0.75) & (np.abs(c.x - sun_x) < spread + length * rng.random())
        c.paint(0.6 * band, (255, 200, 130))
    # a headland with a lighthouse on the left
    c.paint(c.polygon([(0, 200), (60, 196), (130, 236), (130, 250), (0, 250)]), (40, 32, 52))
    c.paint(c.polygon([(44, 150), (52, 150), (56, 200), (40, 200)]), (232, 226, 214))
    c.paint(c.polygon([(43, 148), (48, 138), (53, 148)]), (170, 50, 50))
    c.paint(c.ellipse(48, 146, 6, 4), (255, 240, 170))
    for bx, by, size in ((190, 290, 1.4), (300, 262, 0.9), (420, 320, 1.8), (250, 350, 1.2)):
        hull = [
            (bx - 30 * size, by),
            (bx + 30 * size, by),
            (bx + 20 * size, by + 10 * size),
            (bx - 20 * size, by + 10 * size),
        ]
        c.paint(c.polygon(hull), (34, 26, 40))
        c.paint(
            c.polygon([(bx - 1, by - 50 * size), (bx + 1, by - 50 * size), (bx + 1, by), (bx - 1, by)]), (34, 26, 40)
        )
        c.paint(c.polygon([(bx + 3, by - 46 * size), (bx + 26 * size, by - 4), (bx + 3, by - 4)]), (246, 232, 210))
        c.paint(c.polygon([(bx - 3, by - 36 * size), (bx - 3, by - 4), (bx - 18 * size, by - 4)]), (226, 206, 190))
    return c.pixels()


def sphere(c: Canvas, cx: float, cy: float, r: float, colour: Colour) -> None:
    """A lit ball: Lambert shading from the upper left, and a highlight."""
    dx, dy = (c.x - cx) / r, (c.y - cy) / r
    nz = np.sqrt(np.clip(1 - dx * dx - dy * dy, 0.0, 1.0))
    light = np.clip(-0.5 * dx - 0.55 * dy + 0.67 * nz, 0.0, 1.0)
    shade = np.asarray(colour) * (0.25 + 0.75 * light[..., None])
    c.paint(c.ellipse(cx, cy, r, r), shade)
    c.paint(0.8 * c.ellipse(cx - 0.35 * r, cy - 0.4 * r, 0.18 * r, 0.12 * r), (255, 250, 240))


def still_life() -> np.ndarray:
    """512×512: fruit, a bowl and a vase on a table."""
    rng = np.random.default_rng(21)
    c = Canvas(512, 512)
    table = 330.0
    c.paint(np.ones((c.h, c.w)), gradient(c.y / table, [(0.0, (52, 60, 70)), (1.0, (120, 118, 110))]))
    grain = rng.random(64)[np.minimum((c.y - table).astype(int) // 3, 63).clip(0)]
    wood = np.stack([118 + 30 * grain, 76 + 18 * grain, 44 + 10 * grain], axis=-1)
    c.paint((c.y >= table).astype(np.float64), wood)
    c.paint(0.35 * c.ellipse(250, 352, 210, 18), (20, 14, 10))  # shadow
    # vase
    c.paint(c.ellipse(390, 260, 52, 80), (40, 92, 140))
    c.paint(c.polygon([(372, 150), (408, 150), (404, 200), (376, 200)]), (40, 92, 140))
    c.paint(c.ellipse(390, 150, 20, 6), (24, 60, 96))
    c.paint(0.5 * c.ellipse(372, 240, 10, 40), (120, 170, 210))
    # fruit behind the bowl's rim
    sphere(c, 170, 268, 44, (200, 40, 36))
    sphere(c, 250, 262, 48, (236, 140, 30))
    sphere(c, 140, 300, 30, (150, 190, 60))
    # the bowl: the lower half of an ellipse, its rim darker
    bowl = c.ellipse(200, 300, 130, 60) * (c.y >= 300)
    c.paint(bowl, gradient((c.y - 300) / 60, [(0.0, (226, 220, 206)), (1.0, (150, 140, 126))]))
    c.paint(c.ellipse(200, 300, 130, 8) - c.ellipse(200, 300, 124, 5), (120, 110, 100))
    sphere(c, 100, 352, 26, (120, 40, 120))  # a plum in front
    sphere(c, 300, 356, 22, (214, 190, 60))
    return c.pixels()


def palette() -> np.ndarray:
    """512×512: patches of brushed colour (nearest of 40 seeded centres, stroked in a seeded direction)."""
    rng = np.random.default_rng(22)
    c = Canvas(512, 512)
    colours = np.array(
        [(230, 57, 70), (241, 170, 60), (252, 222, 120), (42, 157, 143), (38, 70, 120), (140, 70, 160), (250, 240, 225)]
    )
    centres = rng.random((40, 2)) * 512
    owner = np.argmin((c.x[..., None] - centres[:, 0]) ** 2 + (c.y[..., None] - centres[:, 1]) ** 2, axis=-1)
    fill = colours[rng.integers(0, len(colours), 40)][owner].astype(np.float64)
    direction = rng.random((40, 2)) - 0.5
    direction /= np.sqrt((direction**2).sum(axis=1))[:, None]
    along = c.x * direction[owner, 0] + c.y * direction[owner, 1]
    stroke = (np.floor(along / 5) % 3 == 0).astype(np.float64)  # every third 5-pixel band a darker stroke
    c.paint(np.ones((c.h, c.w)), fill * (1 - 0.18 * stroke[..., None]))
    return c.pixels()


PICTURES: dict[str, Callable[[], np.ndarray]] = {
    "harbour.png": harbour,
    "still-life.png": still_life,
    "palette.png": palette,
}


def png(pixels: np.ndarray) -> bytes:
    """The PNG file of `pixels` (no metadata: the bytes depend on the pixels and Pillow's zlib only)."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=True)
    return out.getvalue()


def main() -> None:
    """Write every picture into OUT_DIR (default: jobs/images); with --smoke, into a temp dir, checked against it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=COMMITTED)
    parser.add_argument(
        "--smoke", action="store_true", help="write into a temp dir and compare with the committed files"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="raywalk-pictures-")) if args.smoke else args.out
    folder.mkdir(parents=True, exist_ok=True)
    same = True
    for name, draw in PICTURES.items():
        path = folder / name
        path.write_bytes(png(draw()))
        print(f"{path}: {path.stat().st_size} bytes")
        if args.smoke:
            equal = path.read_bytes() == (COMMITTED / name).read_bytes()
            print(f"same bytes as {name}: {equal}")
            same &= equal
            path.unlink()
    if args.smoke:
        folder.rmdir()
        sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
