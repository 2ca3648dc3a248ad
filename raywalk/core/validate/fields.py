"""The validator's base: typed reads of one field each, every failure one line naming file, field and reason."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

from raywalk.errors import JobError

__all__ = ["Fields", "PictureProbe", "Probe", "SoundInfo", "short", "type_name"]

E = TypeVar("E", bound=StrEnum)


class SoundInfo(Protocol):
    """What validation needs to know of a soundtrack (`raywalk.outputs.audio.AudioInfo` is one)."""

    @property
    def duration(self) -> float: ...

    @property
    def sha256(self) -> str: ...


class PictureFacts(Protocol):
    """What validation needs to know of a picture file (`raywalk.core.picture.PictureInfo` is one)."""

    @property
    def sha256(self) -> str: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


# Reads a soundtrack for the loader, so that validation itself does no I/O. Raises AudioError.
Probe = Callable[[Path], SoundInfo]
# Reads a picture (a local path or a pyarrow.fs URI, `raywalk.core.job.picture_source`). Raises PictureError.
PictureProbe = Callable[[str], PictureFacts]


class Fields:
    """Turns plain data into values, raising `JobError` at the first problem.

    `source` names the job in errors and locates its soundtrack and pictures; `probe` reads
    that soundtrack where the data does not already record its duration and hash, `picture_probe` each
    picture whose hash and size the data does not record.
    """

    def __init__(self, source: str, probe: Probe | None = None, picture_probe: PictureProbe | None = None):
        self.source = source
        self.probe = probe
        self.picture_probe = picture_probe
        self.probed: dict[str, PictureFacts] = {}  # by source: a picture named twice is read once

    def fail(self, where: str, reason: str) -> NoReturn:
        """Raises:
        JobError: always, as "SOURCE: WHERE: REASON"."""
        raise JobError(f"{self.source}: {where}: {reason}")

    def section(self, data: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """A mapping of only `allowed` keys (None: an empty one)."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(where or "job", f"must be a mapping, got {type_name(data)}")
        for key in data:
            if key not in allowed:
                self.fail(
                    f"{where}.{key}" if where else short(key), f"unknown key (expected one of: {', '.join(allowed)})"
                )
        return data

    def integer(
        self,
        data: dict[str, Any],
        key: str,
        where: str,
        default: int,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{where}.{key}", f"must be an integer, got {type_name(value)}")
        if minimum is not None and value < minimum:
            self.fail(f"{where}.{key}", f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(f"{where}.{key}", f"must be at most {maximum:,}, got {short(value)}")
        return value

    def number(
        self,
        data: dict[str, Any],
        key: str,
        where: str,
        default: float,
        minimum: float | None = None,
        exclusive: bool = False,
        maximum: float | None = None,
    ) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(f"{where}.{key}", f"must be a number, got {type_name(value)}")
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            self.fail(f"{where}.{key}", f"must be {'>' if exclusive else '>='} {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(f"{where}.{key}", f"must be at most {maximum:g}, got {short(value)}")
        return float(value)

    def boolean(self, data: dict[str, Any], key: str, where: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", f"must be true or false, got {type_name(value)}")
        return value

    def string(self, data: dict[str, Any], key: str, where: str, default: str) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{where}.{key}", f"must be a non-empty string, got {type_name(value)}")
        return value

    def choice(self, data: dict[str, Any], key: str, where: str, default: E, choices: type[E]) -> E:
        """One member of the closed set `choices`, as written (the default when the key is absent)."""
        value = data.get(key, default)
        if not isinstance(value, str) or value not in [member.value for member in choices]:
            self.fail(f"{where}.{key}", f"unknown {key} {short(value)} (expected one of: {', '.join(choices)})")
        return choices(value)


def type_name(value: Any) -> str:
    """The type and (cut) value of `value`, for a message."""
    return "nothing" if value is None else f"{type(value).__name__} {short(value)}"


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, so that a hostile value cannot flood a message."""
    text = (
        repr(value)
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) < 10**30
        else f"{str(value)[:6]}...({len(str(abs(value)))} digits)"
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."
