"""The job's pictures as the run holds them: where the job uses each, and the decoded copy, for the workers
that encode them and the contact sheet and report that show them."""

from __future__ import annotations

import numpy as np

from raywalk.core.job import Job, Picture
from raywalk.core.picture import decode_picture
from raywalk.errors import RunError
from raywalk.run.layout import picture_name
from raywalk.run.store import RunStore


def picture_roles(job: Job) -> list[tuple[Picture, str]]:
    """Each of `job.pictures` with where the job uses it: "init image", or "keyframe K" (its first keyframe)."""
    if job.walk.init_image is not None:
        return [(job.walk.init_image, "init image")]
    first: dict[Picture, int] = {}
    for k, keyframe in enumerate(job.walk.keyframes):
        if keyframe.image is not None:
            first.setdefault(keyframe.image, k)
    return [(picture, f"keyframe {k}") for picture, k in first.items()]


def read_picture(store: RunStore, picture: Picture) -> np.ndarray:
    """The run's copy of `picture`, decoded: uint8 (H, W, 3).

    Raises:
        RunError: the run holds no copy of it.
        PictureError: the copy cannot be decoded.
        StoreError: storage kept failing.
    """
    name = picture_name(picture)
    try:
        data = store.read_bytes(name)
    except FileNotFoundError:
        raise RunError(f"{store.url(name)} is missing; rendering the job again copies it in") from None
    return decode_picture(data, store.url(name))


def picture_label(picture: Picture, role: str) -> str:
    """How a contact sheet labels a picture: "keyframe 0 · strength 0.2 · crop"."""
    return f"{role} · strength {picture.strength:g} · {picture.fit}"
