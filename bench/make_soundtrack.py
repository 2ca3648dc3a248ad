"""Generate jobs/audio/beat.flac, the synthetic soundtrack of jobs/music-walk.yaml (nothing downloaded).

Ten seconds at 120 beats a minute: a kick on every beat, a snare on beats 2 and 4, a soft
pad chord throughout and a quiet break from 4 to 6 s (pad only), so a walk timed to it
moves on the beats, drifts along in the break (the floor) and jumps back in at 6 s.
Seeded: running it again writes the same samples.

    python bench/make_soundtrack.py [OUT]
    python bench/make_soundtrack.py --smoke   # into a temp dir; fails unless the samples equal the committed file's
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

RATE = 22_050
SECONDS = 10.0
BEAT = 0.5  # seconds: 120 BPM
BREAK = (4.0, 6.0)
COMMITTED = Path(__file__).resolve().parent.parent / "jobs" / "audio" / "beat.flac"


def soundtrack() -> np.ndarray:
    rng = np.random.default_rng(2024)
    n = int(RATE * SECONDS)
    time = np.arange(n) / RATE
    out = 0.05 * sum(np.sin(2 * np.pi * f * time) for f in (110.0, 138.6, 164.8))  # an A minor pad
    for beat, start in enumerate(np.arange(0.0, SECONDS, BEAT)):
        if BREAK[0] <= start < BREAK[1]:
            continue
        i = round(start * RATE)
        tail = np.arange(min(int(0.25 * RATE), n - i)) / RATE
        kick = 0.8 * np.sin(2 * np.pi * (50 + 100 * np.exp(-tail * 30)) * tail) * np.exp(-tail * 12)
        out[i : i + len(tail)] += kick
        if beat % 2:
            out[i : i + len(tail)] += 0.4 * rng.standard_normal(len(tail)) * np.exp(-tail * 25)  # snare
    return np.asarray(np.clip(out, -1, 1), dtype=np.float32)


def main() -> None:
    """Write the soundtrack to OUT (default: the committed file); with --smoke, to a temp dir, checked against it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=COMMITTED)
    parser.add_argument(
        "--smoke", action="store_true", help="write into a temp dir and compare with the committed file"
    )
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="raywalk-soundtrack-")) / "beat.flac" if args.smoke else args.out
    soundfile.write(path, soundtrack(), RATE, subtype="PCM_16")
    print(f"{path}: {path.stat().st_size} bytes")
    if args.smoke:
        same = np.array_equal(soundfile.read(path, dtype="int16")[0], soundfile.read(COMMITTED, dtype="int16")[0])
        print(f"same samples as {COMMITTED.name}: {same}")
        path.unlink()
        path.parent.rmdir()
        sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
