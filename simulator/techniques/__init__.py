"""Efficiency techniques as transforms of the cost model.

A technique is a validated, parameterised entry of ``Scenario.techniques`` (``{"name": ..., <params>}``).
It may edit the architecture (``apply_model``), the deployment's per-element sizes or knobs
(``apply_deployment``) and the operator list of a step (``apply_ops``). Techniques compose in list
order. ``REGISTRY`` maps names to technique classes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from hwmodels.errors import InputError, pydantic_to_input_error, unknown_name


class Technique(BaseModel):
    """Base class: subclasses declare their parameters as pydantic fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    citation: ClassVar[str]

    def apply_model(self, model):
        return model

    def apply_deployment(self, dep):
        return dep

    def apply_ops(self, ops, shape, dep):
        return ops


REGISTRY: dict[str, type[Technique]] = {}


def register(cls: type[Technique]) -> type[Technique]:
    REGISTRY[cls.name] = cls
    return cls


def parse_techniques(entries: list[dict[str, Any]]) -> list[Technique]:
    """Validate scenario entries into technique objects; errors name the entry and field."""
    out = []
    for i, entry in enumerate(entries):
        field = f"techniques[{i}]"
        params = dict(entry)
        name = params.pop("name", None)
        if name not in REGISTRY:
            raise unknown_name(f"{field}.name", str(name), REGISTRY)
        try:
            out.append(REGISTRY[name].model_validate(params))
        except ValidationError as exc:
            raise pydantic_to_input_error(exc, field) from None
    return out


__all__ = ["REGISTRY", "InputError", "Technique", "parse_techniques", "register"]
