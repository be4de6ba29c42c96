"""A stack profile: how an implementation (an engine, a framework, the user's own model code) differs
from the kernels a GPU's calibration profile describes. Pydantic, stored as JSON (``stack_schema_version``).

Three groups of named parameters, each with a physical meaning, so that a fit on one model carries to
other models and, sitting on each GPU's own base profile, to other GPUs:

* ``efficiency``: per operation kind, a smooth correction of the base profile's efficiency curves,
  ``eff'(x) = min(1, eff(x) * scale * 10**(slope * (x - x_ref)))`` with ``x`` = log10 of the launch's
  FLOPs (compute curve) or bytes (memory curve) and ``x_ref`` = :data:`REF_LOG10` (a slower attention
  kernel, a GEMM library that is weaker at small sizes...);
* ``implementation``: the extra work of an unfused implementation, declared rather than fitted (it is
  read off the code): element-wise launches and HBM bytes per element of RMSNorm, rotary and the gated
  activation; separate q/k/v or gate/up GEMM launches; K/V expanded to every query head of a GQA group
  (``repeat_kv``); a materialised attention mask; a KV cache grown by concatenation; extra MoE routing
  launches;
* ``fixed``: per-launch, per-layer and per-step costs: ``launch_overhead_s`` (GPU idle between two
  launches, added to every launch), and for ``execution: eager`` the host: issuing a kernel takes
  ``host_launch_s`` and a layer ``host_layer_s`` of Python, so a step takes
  ``max(GPU time, launches * host_launch_s + layers * host_layer_s + host_step_s) + step_s``
  (the GPU cannot run ahead of the host that launches its kernels); ``graph`` (CUDA graphs) has no host
  terms, only ``step_s``.

``train`` holds the training counterparts (``simulator.stacks.train_step_time``). ``residuals`` keeps
the fit's log errors (in and out of sample) and the shapes it saw, from which every prediction's error
band is made (``simulator.stacks.bands``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hwmodels.errors import InputError, validated

STACK_SCHEMA_VERSION = 1
# Reference launch size of the slope per kind, log10 FLOPs (compute curve) and log10 bytes (memory curve):
# about the middle of what a step's launches span (the grids of validation/sweeps.py).
REF_LOG10 = {"compute": 9.0, "memory": 7.0}
CORRECTED_KINDS = ("gemm", "grouped_gemm", "attention_prefill", "attention_decode", "memory")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EfficiencyCorrection(_Strict):
    scale: float = Field(1.0, gt=0.0, le=10.0, description="efficiency multiplier at the reference launch size")
    slope_per_decade: float = Field(0.0, ge=-1.0, le=1.0, description="log10 of the multiplier's change per decade")


class Elementwise(_Strict):
    """An element-wise operator as the stack runs it: ``launches`` kernels moving ``bytes_per_element``
    HBM bytes per element of its output width in all (None: as the step prices the fused kernel)."""

    launches: float = Field(1.0, ge=1.0, le=64.0)
    bytes_per_element: float | None = Field(None, gt=0.0, le=512.0)


class Implementation(_Strict):
    norm: Elementwise = Elementwise()
    rotary: Elementwise = Elementwise()
    activation: Elementwise = Elementwise()
    separate_qkv: bool = Field(False, description="q, k and v projections as three GEMM launches")
    separate_gate_up: bool = Field(False, description="gate and up projections (dense MLP) as two launches")
    separate_expert_gate_up: bool = Field(False, description="the routed experts' gate and up as two grouped GEMMs")
    attention_output_copy: bool = Field(False, description="attention output transposed into a contiguous copy")
    gqa_expand_kv: Literal["never", "prefill", "decode", "always"] = Field(
        "never", description="K/V repeated to every query head before attention (transformers' repeat_kv)")
    materialized_mask: Literal["never", "prefill", "decode", "always"] = Field(
        "never", description="an explicit (batch, 1, q, kv) mask written and read by attention")
    kv_append: Literal["in_place", "concat"] = Field(
        "in_place", description="concat: each step copies every layer's whole K/V cache (torch.cat)")
    moe_routing_launches: float = Field(1.0, ge=1.0, le=64.0, description="launches of the route and sort ops")


class FixedCosts(_Strict):
    execution: Literal["eager", "graph"] = "graph"
    launch_overhead_s: float = Field(0.0, ge=0.0, le=1e-3)
    host_launch_s: float = Field(0.0, ge=0.0, le=1e-3)
    host_layer_s: float = Field(0.0, ge=0.0, le=1e-2)
    host_step_s: float = Field(0.0, ge=0.0, le=1.0)
    step_s: float = Field(0.0, ge=0.0, le=1.0)


class TrainCorrections(_Strict):
    """Training counterparts: backward GEMM/attention time relative to forward's (the stack's forward
    corrections apply to it too), the optimizer's time relative to the priced one, fixed cost per step."""

    backward_scale: float = Field(1.0, gt=0.0, le=10.0)
    optimizer_scale: float = Field(1.0, gt=0.0, le=10.0)
    step_s: float = Field(0.0, ge=0.0, le=10.0)


class Residuals(_Strict):
    """What the fit left: log(measured / predicted) per row, in sample and with the row's model held out,
    and the range of shapes and the GPUs the rows covered (for the error bands)."""

    phases: dict[str, list[float]] = Field(default_factory=dict, description="phase -> in-sample log errors")
    held_out: dict[str, list[float]] = Field(default_factory=dict, description="phase -> leave-one-model-out")
    log10_tokens: dict[str, list[float]] = Field(default_factory=dict, description="phase -> [min, max]")
    log10_context: dict[str, list[float]] = Field(default_factory=dict, description="phase -> [min, max]")
    gpus: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)


class StackProfile(_Strict):
    stack_schema_version: int = STACK_SCHEMA_VERSION
    name: str
    description: str = ""
    efficiency: dict[str, EfficiencyCorrection] = Field(default_factory=dict)
    implementation: Implementation = Implementation()
    fixed: FixedCosts = FixedCosts()
    train: TrainCorrections = TrainCorrections()
    residuals: Residuals = Residuals()
    fit: dict[str, Any] = Field(default_factory=dict, description="fit statistics, rows, command")

    def correction(self, kind: str) -> EfficiencyCorrection:
        return self.efficiency.get(kind, EfficiencyCorrection())


def is_stack_data(data: Any) -> bool:
    return isinstance(data, dict) and "stack_schema_version" in data


def stack_from_dict(data: dict[str, Any], field: str = "calibration") -> StackProfile:
    version = data.get("stack_schema_version")
    if version != STACK_SCHEMA_VERSION:
        raise InputError(f"{field}.stack_schema_version", f"{version!r} is not supported (expected {STACK_SCHEMA_VERSION})")
    return validated(StackProfile, data, field)


def read_json(path: str | Path, field: str, max_bytes: int = 16 * 2**20) -> Any:
    """A JSON file read through a size cap (a profile is kilobytes; a huge file is refused, not parsed)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(field, f"cannot read {str(path)!r}: {exc.__class__.__name__}") from None
    if len(raw) > max_bytes:
        raise InputError(field, f"{str(path)!r} is larger than {max_bytes} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise InputError(field, f"{str(path)!r} is not valid JSON") from None
