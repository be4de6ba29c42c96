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

import yaml

from hwmodels.errors import InputError

CONFIG_LIMIT_BYTES = 4 * 2**20  # config.json, scenario files, accelerator specs
# YAML nodes a document may hold once its aliases are expanded: a few hundred in any real scenario, model
# or price file; an alias "bomb" (billion laughs: 9 levels of 9 aliases) expands to 9^9
MAX_YAML_NODES = 100_000
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


def safe_load_bounded(text: str, field: str, name: str = "the file", max_nodes: int = MAX_YAML_NODES):
    """``yaml.safe_load(text)``, refusing a document whose aliases expand to more than ``max_nodes`` nodes
    (or recurse) with one ``InputError`` line naming ``name``: PyYAML builds an aliased value once and
    shares it, but whatever walks the result (validation, JSON, printing) would walk every copy. The
    expanded size is counted on the node graph before anything is built, in time linear in its distinct
    nodes. Syntax errors raise ``yaml.YAMLError`` as ``yaml.safe_load`` does."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node, max_nodes) > max_nodes:
            raise InputError(field, f"{name}: its YAML aliases expand to more than {max_nodes:,} nodes "
                                    "(an alias bomb?); write the values out instead")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


def _expanded_nodes(root, limit: int) -> int:
    """Nodes of the document with every alias expanded (a shared node counted at each use), counted up to
    just past ``limit``; a node that contains itself counts as past it."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > limit:
                return size
            sizes[key] = size
        elif key not in sizes:
            if key in on_path:  # a recursive alias: endless when expanded
                return limit + 1
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]
