"""What both shipped renderers do with their constructor options: bind them to the constructor's defaults
and check the ones that take one of a few values (one helper for each, used by every renderer's Settings)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from raywalk.errors import RendererError


def bind_options(owner: str, signature: inspect.Signature, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor's arguments from `kwargs`, with the defaults of its `signature`.

    Raises:
        RendererError: an unknown or missing argument, named for `owner` (e.g. "KerasCV renderer").
    """
    try:
        bound = signature.bind(**kwargs)
    except TypeError as e:
        raise RendererError(f"{owner}: {e}") from e
    bound.apply_defaults()
    return dict(bound.arguments)


def check_choices(owner: str, settings: object, choices: Mapping[str, Iterable[Any]]) -> None:
    """Each option named in `choices` is one of its allowed values (True, False and None compared by
    identity, so 1 is not True).

    Raises:
        RendererError: an option with another value, named with the values it may take.
    """
    for name, allowed in choices.items():
        values = tuple(allowed)
        value = getattr(settings, name)
        if not any(value is a or (isinstance(a, str) and value == a) for a in values):
            raise RendererError(f"{owner}: option {name} must be one of {', '.join(map(str, values))}, got {value!r}")
