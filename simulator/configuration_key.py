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
    for name in type(scenario).model_fields:
        if name not in ("model", "calibration", "workload"):
            value = getattr(scenario, name)
            key.append(source_key(value.gpu) if name == "hardware" and isinstance(value.gpu, str) else None)
            key.append(repr(value.__dict__) if isinstance(value, BaseModel) else repr(value))
    return tuple(key)
