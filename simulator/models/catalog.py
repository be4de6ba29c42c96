"""Find a model: a preset name, a HF ``config.json`` path, an inline dict, or a ``ModelSpec``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from hwmodels.errors import InputError, unknown_name, validated
from hwmodels.io import read_text_bounded, safe_load_bounded
from simulator.models.spec import ModelSpec

PRESET_DIR = Path(__file__).parent / "presets"


@lru_cache(maxsize=None)
def _preset_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.yaml"))}


def list_models() -> list[str]:
    """Names of the built-in model presets."""
    return list(_preset_files())


def model_from_dict(data: dict[str, Any], field: str = "model") -> ModelSpec:
    """Validate an inline model description (the preset schema, or a HF config if it has model_type)."""
    if "model_type" in data and "num_layers" not in data:
        from simulator.models.hf_config import spec_from_hf_config

        return spec_from_hf_config(data, field=field)
    return validated(ModelSpec, data, field)


@lru_cache(maxsize=None)
def _preset(name: str) -> ModelSpec:
    path = _preset_files()[name]
    return model_from_dict(yaml.safe_load(path.read_text()), f"model[{name}]")


def get_model(spec: str | dict[str, Any] | ModelSpec, field: str = "model") -> ModelSpec:
    """A model from a preset name, a path to a HF ``config.json`` (or a preset-schema YAML/JSON),
    an inline dict, or a ``ModelSpec``."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, dict):
        return model_from_dict(spec, field)
    if not isinstance(spec, str) or not spec:
        raise InputError(field, "expected a preset name, a config.json path or a mapping")
    if spec in _preset_files():
        return _preset(spec)
    path = Path(spec)
    if path.suffix in (".json", ".yaml", ".yml") or path.exists():
        if path.is_dir():
            path = path / "config.json"
        text = read_text_bounded(path, field=field)
        try:
            data = safe_load_bounded(text, field, repr(spec))  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise InputError(field, f"cannot read {spec!r}: {exc.__class__.__name__}") from None
        if not isinstance(data, dict):
            raise InputError(field, f"{spec!r} does not hold a mapping")
        data.setdefault("name", path.parent.name if path.name == "config.json" else path.stem)
        return model_from_dict(data, field)
    raise unknown_name(field, spec, _preset_files())
