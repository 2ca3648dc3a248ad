"""Today's job files keep their meaning: the same walk parameters, frames and fingerprints, bit for bit.

The digests were computed with the code before keyframes, timing and pacing existed
(commit d8b61bc); a change of maths, of draw order or of what the fingerprint covers fails here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from raywalk import Trajectory, load_job

JOBS = Path(__file__).resolve().parent.parent / "jobs"

# job -> (SHA-256 of its params, SHA-256 of its encodings and noise), keyframes (K, 77, 16) from default_rng(0)
DIGESTS = {
    "cows-circle": (
        "6e16728c491f6cb57c4bfad5004db19a0dca1572ed2abfb3b858e91a5f549ccf",
        "f6f8f9ee78d96f4f7ff3129ac612b8b2537aae42b367624f36c3e03f8dca0389",
    ),
    "dog-to-fruit-150": (
        "d1229e62cf1d9c4e3cfd07d3ad18e0a26f8fbda830145e3d92d043292f764cfd",
        "4ea1bb5fb5e108a314a0c388940aea30070e0ed269bb0eb63a587f357474cbce",
    ),
    "dog-to-fruit-5": (
        "77a2019898d1085655a32ba6e4c3d06d8dd4120b48d4e07a2fd7cce7bea858cf",
        "7b6429d6060ef74493a73941d9633041693d699e4b66c05b05a339e698a959f2",
    ),
    "eiffel-walk": (
        "f526618e65a2d6184c99c9de6139f9e2dbea1ada3315fb48ed224e38bcee3c7e",
        "09b6cd378872e7e2c0e6cd5093c8c107d81b18b22e27303438de8d79b3460085",
    ),
    "four-way-grid-varying-noise": (
        "dee2d0e3d0c4392cb38e2f8a824af9e245376065a7495425674f522c2641fdd2",
        "0ad3381148c13449fb92cc4a85d3332e4224848955f1ea7053366e86847d03d2",
    ),
    "four-way-grid": (
        "dee2d0e3d0c4392cb38e2f8a824af9e245376065a7495425674f522c2641fdd2",
        "38aa746af50ef8208e539ecfa230538b49ad20d5d04d7a3c6f607f3763e790a3",
    ),
    "smoke": (
        "343dd5fdecf316e71f0239d754b342e8bdef25b72790992d4ae29f71e95b02ed",
        "96a6d61907656b785502f4c66479f0c9f063f1e7f4fa90f3119a48e328b7f9ca",
    ),
}

FINGERPRINTS = {
    "cows-circle": "707be87a46c5023100471b651cfc3093e702986cbcf1449eb00077e9eb3a47fc",
    "dog-to-fruit-150": "0c8eca98b830df29f41e6f9adb45ea0e2e9dc1db7e3fee37d386b3c389987314",
    "dog-to-fruit-5": "8eb663cf646bb63c4e0f103ccb6e8d9f5d8710915f9bb6c908516020ba0a4632",
    "eiffel-walk": "9e6fb6b7f33342540f4224bcd4807a137b420d13d3c8a94d0d9479365893cfab",
    "four-way-grid-varying-noise": "df76357f314097a25e908a55070e8c667224f61d82e0b50c3e3a05691f153e51",
    "four-way-grid": "14bc1dd030aff85253e094b9fd8ed8f8349b17146e78e08fbe9fa6798c0f50f6",
    "smoke": "4f2efdc7c70322733c97ab75c58f935e3b77904fe2002854df39a3d95be96a64",
}


def digests(job) -> tuple[str, str]:
    keys = np.random.default_rng(0).standard_normal((len(job.prompts), 77, 16)).astype(np.float32)
    traj = Trajectory(job, keys)
    params = traj.params(0, job.num_frames)
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode() + str(params[name].dtype).encode() + params[name].tobytes())
    enc, noise = traj.frames(0, job.num_frames)
    return h.hexdigest(), hashlib.sha256(enc.tobytes() + noise.tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_todays_jobs_give_the_same_params_frames_and_fingerprint(name):
    job = load_job(JOBS / f"{name}.yaml")
    assert digests(job) == DIGESTS[name]
    assert job.fingerprint() == FINGERPRINTS[name]
