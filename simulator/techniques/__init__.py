"""Efficiency techniques as transforms of the cost model.

A technique is a validated, parameterised entry of ``Scenario.techniques`` (``{"name": ..., <params>}``).
Techniques compose in list order, each through hooks the core calls:

* architecture and precision: ``apply_model`` (e.g. fewer KV heads, a latent KV), ``apply_deployment``
  (bytes per element, per-layer attention kinds, sparse density);
* the step: ``step_shape`` (tokens a step runs: cached prefixes, verify passes, piggybacked prefill
  chunks), ``prefill_chunk_tokens``, ``apply_ops`` (edit, add or re-price operators), ``overlap_policy``;
* the KV cache: ``kv_tokens`` (tokens a layer keeps: both device memory and what decode attention reads),
  ``attention_pairs`` (what prefill attention computes), ``kv_resident_fraction`` (offload),
  ``kv_shared_fraction`` / ``kv_shared_read_once`` (prefix sharing);
* throughput and memory: ``tokens_per_step`` (speculation), ``extra_weight_bytes`` (draft models, heads),
  ``extra_request_bytes`` (a draft's KV, score accumulators).

``REGISTRY`` maps names to technique classes; the families live in one module each.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

from hwmodels.errors import InputError, unknown_name, validated


class Technique(BaseModel):
    """Base class: subclasses declare their parameters as pydantic fields (each with a description),
    and set ``name``, ``family``, ``citation`` (paper and arXiv id) and ``summary`` (what it transforms)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    family: ClassVar[str] = ""
    citation: ClassVar[str]
    summary: ClassVar[str] = ""
    _entry: str = PrivateAttr("")  # where the scenario lists it, e.g. "techniques[1]"

    def error(self, field: str, message: str) -> InputError:
        """An ``InputError`` naming this technique's entry and parameter."""
        where = self._entry or f"techniques.{self.name}"
        return InputError(f"{where}.{field}" if field else where, f"{message} ({self.name})")

    # --- architecture and precision ---------------------------------------------------------------

    def apply_model(self, model):
        return model

    def apply_deployment(self, dep):
        return dep

    # --- the step --------------------------------------------------------------------------------

    def step_shape(self, shape, dep):
        return shape

    def prefill_chunk_tokens(self):
        return None

    def apply_ops(self, ops, shape, dep):
        return ops

    def overlap_policy(self, policy: str) -> str:
        return policy

    # --- the KV cache ----------------------------------------------------------------------------

    def kv_tokens(self, tokens, kind: str):
        return tokens

    def attention_pairs(self, pairs, shape, kind: str):
        return pairs

    def kv_resident_fraction(self, dep) -> float:
        return 1.0

    def kv_shared_fraction(self) -> float:
        return 0.0

    def kv_shared_read_once(self) -> bool:
        return False

    # --- throughput and memory -------------------------------------------------------------------

    def tokens_per_step(self) -> float:
        return 1.0

    def extra_weight_bytes(self, dep):
        return 0.0

    def extra_request_bytes(self, dep, tokens):
        return 0.0


REGISTRY: dict[str, type[Technique]] = {}


def register(cls: type[Technique]) -> type[Technique]:
    REGISTRY[cls.name] = cls
    return cls


def parse_techniques(entries: list[dict[str, Any]]) -> list[Technique]:
    """Validate scenario entries into technique objects; errors name the entry and field."""
    out = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        field = f"techniques[{i}]"
        params = dict(entry)
        name = params.pop("name", None)
        if name not in REGISTRY:
            raise unknown_name(f"{field}.name", str(name), REGISTRY)
        if name in seen:
            raise InputError(f"{field}.name", f"{name!r} appears twice; give it once with all its parameters")
        seen.add(name)
        tech = validated(REGISTRY[name], params, field)
        tech._entry = field
        out.append(tech)
    return out


# The families register themselves on import (they import this module's base class first).
from simulator.techniques import attention_shape, kv_cache, weights, moe, decoding, batching  # noqa: E402,F401,I001
from simulator.techniques import nanoflow, block_transformer  # noqa: E402,F401

__all__ = ["REGISTRY", "InputError", "Technique", "parse_techniques", "register"]
