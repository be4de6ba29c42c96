"""The one exception type for bad user input, shared by every package.

It carries the offending field so that the CLI and the explorer can print a single line such as
``model.num_kv_heads: 8 is not divisible by tp=3`` instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """A user-supplied value is missing, malformed or inconsistent."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def unknown_name(field: str, name: str, known: Iterable[str]) -> InputError:
    """An ``InputError`` for an unknown preset name that suggests the closest known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
    return InputError(field, f"unknown name {name!r}{hint}")


def pydantic_to_input_error(exc, prefix: str = "") -> InputError:
    """Turn the first error of a pydantic ``ValidationError`` into a one-line ``InputError``."""
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first.get("loc", ()) if part != "__root__")
    field = ".".join(p for p in (prefix, loc) if p)
    msg = first.get("msg", "invalid value").removeprefix("Value error, ")
    if first.get("type") == "missing":
        msg = "field required"
    return InputError(field, msg)


def validated(model, data, field: str = ""):
    """``model.model_validate(data)`` (a pydantic class), its first error as a one-line ``InputError``."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise pydantic_to_input_error(exc, field) from None
