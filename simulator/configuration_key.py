"""The key a resolved deployment is cached under: everything of a scenario but its workload, with a
file named in it keyed by path, size and modification time (so an edited file is read again)."""

from __future__ import annotations

import os


def source_key(spec) -> object:
    """A key for a name, inline mapping or file path: a file is keyed by its path, size and mtime."""
    if isinstance(spec, str) and ("/" in spec or os.sep in spec or spec.endswith((".json", ".yaml", ".yml"))):
        try:
            st = os.stat(spec)
        except (OSError, ValueError):
            return spec
        return (spec, st.st_size, st.st_mtime_ns)
    return None  # a catalog name or an inline spec: the JSON holds all of it


def configuration_key(scenario) -> tuple:
    """Everything of a scenario but its workload (which a deployment does not depend on): the validated
    scenario's JSON without it (pydantic's serializer, one string: cheaper to build and to hash than a
    nested tuple; a value JSON has no form for, such as a numpy number in a technique's parameters, by its
repr), and the files it names. Equal configurations written differently (a mapping's keys in
    another order, 1 for 1.0) get different keys, so a key is at worst a cache miss, never a collision."""
    return (scenario.model_dump_json(exclude=_WORKLOAD, fallback=repr), source_key(scenario.model),
            source_key(scenario.calibration), source_key(scenario.hardware.gpu))


_WORKLOAD = {"workload"}
