"""The report's "Pictures" section: the job's own pictures as the run holds them (thumbnail, file, fit,
strength, SHA-256), so a reader sees what the walk started from, passed through or was locked to."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from raywalk.core.job import Job
from raywalk.errors import PictureError, RunError
from raywalk.report.html import data_uri, escape, img
from raywalk.run.layout import picture_name
from raywalk.run.pictures import picture_roles, read_picture
from raywalk.run.store import RunStore

THUMBNAIL = 192  # pixels, the longer side


class ShownPicture(NamedTuple):
    """One picture of the job as the report shows it."""

    thumbnail: bytes | str  # PNG bytes (embedded), or a path or URL relative to the report (linked)
    name: str  # its file name (the run's copy, pictures/<sha256><suffix>, or the job's)
    fit: str  # crop | pad | stretch
    strength: float  # 0 keeps the picture, 1 ignores it
    sha256: str
    role: str = ""  # where the job uses it: "keyframe 0", "init image"


def thumbnail_png(pixels: np.ndarray, size: int = THUMBNAIL) -> bytes:
    """uint8 (H, W, 3) `pixels` shrunk (never enlarged) to at most `size` on the longer side, as PNG bytes."""
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def shown_pictures(store: RunStore, job: Job) -> list[ShownPicture]:
    """The job's pictures as the run holds them, each with an embedded thumbnail of its copy (a copy that
    cannot be read is linked instead, so the report still says what the walk started from).

    Raises:
        StoreError: storage kept failing.
    """
    shown = []
    for picture, role in picture_roles(job):
        name = picture_name(picture)
        try:
            thumbnail: bytes | str = thumbnail_png(read_picture(store, picture))
        except (RunError, PictureError):
            thumbnail = name
        shown.append(ShownPicture(thumbnail, name, str(picture.fit), picture.strength, picture.sha256 or "", role))
    return shown


def pictures_section(pictures: Sequence[ShownPicture]) -> str:
    """The "Pictures" section of the report: each picture's thumbnail with its role, file name, fit,
    strength and short SHA-256 (the whole hash in its tooltip); "" for a job without pictures."""
    if not pictures:
        return ""
    figures = []
    for p in pictures:
        src = data_uri("image/png", p.thumbnail) if isinstance(p.thumbnail, bytes) else escape(p.thumbnail)
        digest = f'<abbr title="{escape(p.sha256)}">{escape(p.sha256[:12])}</abbr>'
        caption = (
            " · ".join([*([escape(p.role)] if p.role else []), f"<code>{escape(p.name)}</code>"])
            + f"<br>fit {escape(p.fit)} · strength {p.strength:g} · sha256 {digest}"
        )
        figures.append(f"<figure>{img(f'picture {p.name}', src, 'out pic')}<figcaption>{caption}</figcaption></figure>")
    return (
        "<h2>Pictures</h2><div class=outputs>"
        + "".join(figures)
        + "</div><p class=sub>The job's pictures, copied into the run (the SHA-256 of each file), fitted to the "
        "model's size by <code>fit</code>. Strength 0 keeps a picture, 1 ignores it.</p>"
    )
