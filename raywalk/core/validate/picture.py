"""Validation of the pictures a walk starts from: a keyframe's `image`, `strength`, `fit`, and `walk.init_image`."""

from __future__ import annotations

import re
from typing import Any

from raywalk.core.job import Picture, picture_source
from raywalk.core.kinds import Fit
from raywalk.core.limits import MAX_PICTURE_PIXELS
from raywalk.core.validate.fields import Fields, short
from raywalk.errors import PictureError

__all__ = ["PICTURE_KEYS", "PictureRules"]

PICTURE_KEYS = ("image", "strength", "fit", "sha256", "width", "height")  # sha256, width, height: as recorded


class PictureRules(Fields):
    """One picture's fields, read from a keyframe entry or `walk.init_image`; the file is probed (`picture_probe`)
    unless the data records its sha256, width and height (a run manifest does)."""

    def picture(self, data: dict[str, Any], where: str, strength_required: bool) -> Picture | None:
        """The picture `data` names under `image`, or None where it names none (then it may set no other
        picture key).

        Raises:
            JobError: a field is wrong. PictureError: the file cannot be read or used.
        """
        if "image" not in data:
            for key in PICTURE_KEYS[1:]:
                if key in data:
                    self.fail(f"{where}.{key}", "applies only with an image")
            return None
        image = self.string(data, "image", where, "")
        if "\x00" in image:
            self.fail(f"{where}.image", "holds a NUL character")
        if strength_required and "strength" not in data:
            self.fail(f"{where}.strength", "missing: how much of the picture to ignore, 0 (keep it) to 1 (ignore it)")
        strength = self.number(data, "strength", where, 0.0, minimum=0, maximum=1)
        fit = self.choice(data, "fit", where, Fit.CROP, Fit)
        recorded = [key for key in ("sha256", "width", "height") if key in data]
        if recorded and len(recorded) < 3:
            self.fail(where, "records a picture's sha256, width and height together, or none of them")
        if recorded:
            sha256 = self.string(data, "sha256", where, "")
            if not re.fullmatch(r"[0-9a-f]{64}", sha256):
                self.fail(f"{where}.sha256", f"must be 64 lowercase hexadecimal digits, got {short(sha256)}")
            width = self.integer(data, "width", where, 0, minimum=1, maximum=MAX_PICTURE_PIXELS)
            height = self.integer(data, "height", where, 0, minimum=1, maximum=MAX_PICTURE_PIXELS)
            return Picture(image, strength, fit, sha256, width, height)
        if self.picture_probe is None:
            self.fail(
                f"{where}.image",
                f"{image}: its sha256, width and height are not given, and nothing here reads the picture "
                "(load the job with raywalk.load_job or raywalk.job_from_dict, which do)",
            )
        source = picture_source(self.source, image)
        try:
            info = self.probed.get(source) or self.picture_probe(source)
        except PictureError as exc:
            raise PictureError(f"{self.source}: {where}.image: {exc}") from None
        self.probed[source] = info
        return Picture(image, strength, fit, info.sha256, info.width, info.height)
