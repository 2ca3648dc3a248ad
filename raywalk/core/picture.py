"""Pictures a walk starts from: decoded from a file's bytes and fitted to the model's size. Pillow and numpy,
no file I/O (the loader reads the bytes, `raywalk.run.sources`).

A picture is decoded once, as the photo shows it: its EXIF orientation
applied, transparency composited on black, as 8-bit RGB. `fit_picture` then
makes it exactly the model's width and height by the job's `fit` (Pillow's
LANCZOS resampling throughout):

- crop (the default): scaled to cover the frame, the overflow cut equally
  from both sides (Pillow's `ImageOps.fit`);
- pad: scaled to fit inside the frame, centred on black (`ImageOps.pad`);
- stretch: resized to exactly the frame, the aspect ratio not kept.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from raywalk.core.kinds import Fit
from raywalk.core.limits import MAX_PICTURE_PIXELS
from raywalk.errors import PictureError

__all__ = ["PictureInfo", "decode_picture", "fit_picture", "picture_info"]


def decode_picture(data: bytes, name: str) -> np.ndarray:
    """The picture in `data` (a file's bytes; `name` names it in errors) as uint8 (H, W, 3) RGB.

    Raises:
        PictureError: not an image, unreadable or truncated, 0 pixels, more than MAX_PICTURE_PIXELS, or
            animated (more than one frame: a GIF, APNG or WebP animation).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width * height == 0:
                raise PictureError(f"{name}: holds 0 pixels ({width}x{height})")
            if width * height > MAX_PICTURE_PIXELS:
                raise PictureError(
                    f"{name}: {width}x{height} is {width * height:,} pixels, more than the "
                    f"{MAX_PICTURE_PIXELS:,} a picture may have"
                )
            frames = int(getattr(opened, "n_frames", 1))
            if frames > 1:
                raise PictureError(f"{name}: is animated ({frames} frames); a walk starts from one picture")
            opened.load()
            image: Image.Image = ImageOps.exif_transpose(opened) or opened
    except PictureError:
        raise
    except UnidentifiedImageError:
        raise PictureError(f"{name}: not an image Pillow can read (PNG, JPEG, WebP, GIF, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PictureError(f"{name}: more than the {MAX_PICTURE_PIXELS:,} pixels a picture may have") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # what Pillow's decoders raise for bad data
        raise PictureError(f"{name}: cannot be decoded: {exc}") from None
    return _rgb(image)


def _rgb(image: Image.Image) -> np.ndarray:
    """8-bit RGB of `image`, any transparency composited on black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def fit_picture(pixels: np.ndarray, width: int, height: int, fit: Fit) -> np.ndarray:
    """uint8 (H, W, 3) `pixels` fitted to uint8 (height, width, 3) by `fit` (see the module docstring)."""
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    size = (width, height)
    if fit == Fit.CROP:
        fitted = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    elif fit == Fit.PAD:
        fitted = ImageOps.pad(image, size, Image.Resampling.LANCZOS, color=(0, 0, 0))
    else:
        fitted = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(fitted.convert("RGB"), dtype=np.uint8)


@dataclass(frozen=True)
class PictureInfo:
    """What a job records of a picture file: which file it is, and its size as decoded."""

    sha256: str
    width: int
    height: int


def picture_info(data: bytes, name: str) -> PictureInfo:
    """The SHA-256 of a picture file's bytes and the size of the picture they decode to.

    Raises:
        PictureError: `decode_picture` refuses them.
    """
    pixels = decode_picture(data, name)
    return PictureInfo(sha256=hashlib.sha256(data).hexdigest(), width=pixels.shape[1], height=pixels.shape[0])
