"""Bounded reading of user files: every file the CLI or the API opens goes through here.

A path the user names may be a device (``/dev/zero`` never ends), a FIFO (blocks forever), a
directory, a file far larger than any input could be, or binary. ``read_text_bounded`` stats the
path first and refuses anything but a regular file under the limit, reads at most ``limit + 1``
bytes (the file may grow between the stat and the read), and decodes UTF-8; each refusal is one
``InputError`` line naming the field.

The limits are two orders of magnitude above the largest real input: a Hugging Face config.json is
1-10 KB (Llama 3.1 405B: 1.0 KB; a per-layer ``layer_types`` list for 100+ layers keeps it under
10 KB); a scenario file is under 10 KB; a measured profile with its raw points is ~130 KB
(``hwmodels/profiles/h100-sxm.json``), a validation result ~140 KB.
"""

from __future__ import annotations

import os
import stat

from hwmodels.errors import InputError

CONFIG_LIMIT_BYTES = 4 * 2**20  # config.json, scenario files, accelerator specs
PROFILE_LIMIT_BYTES = 64 * 2**20  # calibration profiles, validation results, measurement tables


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def read_bytes_bounded(path: str | os.PathLike, limit_bytes: int, field: str) -> bytes:
    """The bytes of a regular file of at most ``limit_bytes``; ``InputError`` otherwise."""
    name = str(path)
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise InputError(field, f"cannot read {name!r}: no such file") from None
    except OSError as exc:
        raise InputError(field, f"cannot read {name!r}: {exc.strerror or exc.__class__.__name__}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(field, f"{name!r} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(field, f"{name!r} is not a regular file (a device, FIFO or socket)")
    if info.st_size > limit_bytes:
        raise InputError(field, f"{name!r} is {info.st_size:,} bytes, over the {_mib(limit_bytes)} limit")
    try:
        # O_NONBLOCK: should the path have been swapped for a FIFO since the stat, open does not block
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(field, f"cannot read {name!r}: {exc.strerror or exc.__class__.__name__}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InputError(field, f"{name!r} is not a regular file (a device, FIFO or socket)")
        data = handle.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise InputError(field, f"{name!r} is over the {_mib(limit_bytes)} limit")
    return data


def decode_text(data: bytes, field: str, name: str = "the file") -> str:
    """UTF-8 text (a leading byte-order mark dropped), or one ``InputError`` line for binary data."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(field, f"{name} is not UTF-8 text (byte {exc.start:,} is 0x{data[exc.start]:02x}); "
                                "expected JSON or YAML") from None


def read_text_bounded(path: str | os.PathLike, limit_bytes: int = CONFIG_LIMIT_BYTES, field: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``limit_bytes``; ``InputError`` naming ``field`` otherwise."""
    return decode_text(read_bytes_bounded(path, limit_bytes, field), field, repr(str(path)))


def is_regular_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an existing regular file (no device, FIFO or directory), without opening it."""
    try:
        return stat.S_ISREG(os.stat(str(path)).st_mode)
    except OSError:
        return False


__all__ = ["CONFIG_LIMIT_BYTES", "PROFILE_LIMIT_BYTES", "decode_text", "is_regular_file",
           "read_bytes_bounded", "read_text_bounded"]
