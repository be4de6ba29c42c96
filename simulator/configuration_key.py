"""The key a resolved deployment is cached under: everything of a scenario but its workload, with a
file named in it keyed by path, size and modification time (so an edited file is read again)."""

from __future__ import annotations

import os

from pydantic import BaseModel


def source_key(spec) -> object:
    """A key for a name, inline mapping or file path: a file is keyed by its path, size and mtime."""
    if isinstance(spec, str) and ("/" in spec or os.sep in spec or spec.endswith((".json", ".yaml", ".yml"))):
        try:
            st = os.stat(spec)
        except (OSError, ValueError):
            return spec
        return (spec, st.st_size, st.st_mtime_ns)
    return repr(spec)


def configuration_key(scenario) -> tuple:
    """Everything of a scenario but its workload (which a deployment does not depend on)."""
    key = [source_key(scenario.model), source_key(scenario.calibration)]
    for name, value in scenario.__dict__.items():
        if name not in ("model", "calibration", "workload"):
            key.append(source_key(value.gpu) if name == "hardware" and isinstance(value.gpu, str) else None)
            key.append(_frozen(value))
    return tuple(key)


_PLAIN = frozenset((str, int, float, bool, type(None)))


def _frozen(value) -> object:
    """A hashable stand-in equal exactly when the values are: sections field by field, lists as tuples,
    mappings (a technique's parameters, an inline spec) by their repr."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, BaseModel):
        return (type(value).__name__, *[v if type(v) in _PLAIN else _frozen(v) for v in value.__dict__.values()])
    if isinstance(value, list | tuple):
        return tuple([v if type(v) in _PLAIN else _frozen(v) for v in value])
    return repr(value)
