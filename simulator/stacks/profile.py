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
from hwmodels.io import PROFILE_LIMIT_BYTES, read_text_bounded

STACK_SCHEMA_VERSION = 1
# Reference launch size of the slope per kind, log10 FLOPs (compute curve) and log10 bytes (memory curve):
# about the middle of what a step's launches span (the grids of validation/sweeps.py).
REF_LOG10 = {"compute": 9.0, "memory": 7.0}
CORRECTED_KINDS = ("gemm", "grouped_gemm", "attention_prefill", "attention_decode", "memory", "strided", "atomic")


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


class RowPass(_Strict):
    """One element-wise pass a stack's MoE layer makes over a tensor of ``rows`` x ``width``: the routed
    (token, expert) rows or the tokens, times the hidden size, the expert intermediate size or twice it;
    ``bytes_per_element`` read and written in all (at bf16 activations; scaled for others); ``kind``:
    ``memory`` (a vectorised kernel), ``strided`` (PyTorch's non-vectorised loop: a broadcast mask, mixed
    dtypes) or ``atomic`` (a scatter-add by atomics, ``index_add_``)."""

    name: str
    rows: Literal["routed", "tokens"] = "routed"
    width: Literal["hidden", "expert_intermediate", "expert_gate_up"] = "hidden"
    bytes_per_element: float = Field(gt=0.0, le=64.0)
    kind: Literal["memory", "strided", "atomic"] = "memory"


class MoEImplementation(_Strict):
    """A routed-expert layer as the stack's code runs it (read off the code; launches counted by
    ``python -m validation.stacks.census``). ``extra_launches_*``: kernels per MoE layer beyond the ones
    roofsim prices (router GEMM, route, sort, permute, grouped GEMMs, activation, combine), with the sort of
    the routed rows in one block (PyTorch sorts up to 4,096 keys in place) or by a multi-pass radix sort
    (more: ATen's ``should_use_small_sort``, aten/src/ATen/native/cuda/Sort.h); they are priced as
    launches. ``passes``: the stack's extra element-wise passes; ``replaces_combine``: its passes include
    the weighted sum back to token order, so roofsim's fused ``moe.unpermute`` is dropped."""

    extra_launches_small_sort: float = Field(0.0, ge=0.0, le=1000.0)
    extra_launches_radix_sort: float = Field(0.0, ge=0.0, le=1000.0)
    train_extra_launches: float = Field(0.0, ge=0.0, le=2000.0,
                                        description="a training step's kernels per MoE layer beyond the priced ones")
    passes: list[RowPass] = Field(default_factory=list)
    replaces_combine: bool = False


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
    layer_extra_launches: float = Field(0.0, ge=0.0, le=1000.0,
                                        description="kernels per layer beyond the priced ones (census), as launches")
    moe: MoEImplementation | None = None
    train_layer_extra_launches: float = Field(0.0, ge=0.0, le=2000.0, description=(
        "a training step's kernels per layer beyond the priced forward and backward ones (census): autograd's"))
    train_saved_hidden_bytes: float = Field(0.0, ge=0.0, le=256.0, description=(
        "activation bytes saved for backward per token, layer and hidden element beyond the fused kernels'"))
    train_saved_intermediate_bytes: float = Field(0.0, ge=0.0, le=256.0, description=(
        "the same per MLP intermediate element (MoE: per element of the k routed rows' expert width)"))
    train_saved_routed_bytes: float = Field(0.0, ge=0.0, le=256.0, description=(
        "the same per hidden element of each of a MoE token's k routed rows"))


class FixedCosts(_Strict):
    execution: Literal["eager", "graph"] = "graph"
    launch_overhead_s: float = Field(0.0, ge=0.0, le=1e-3)
    host_launch_s: float = Field(0.0, ge=0.0, le=1e-3)
    host_layer_s: float = Field(0.0, ge=0.0, le=1e-2)
    host_step_s: float = Field(0.0, ge=0.0, le=1.0)
    step_s: float = Field(0.0, ge=0.0, le=1.0)


class TrainCorrections(_Strict):
    """Training counterparts: the backward's time relative to its priced time (the stack's forward
    corrections apply to it too), the optimizer's relative to the priced one, the host's time per kernel
    relative to inference's, a fixed cost per step."""

    backward_scale: float = Field(1.0, gt=0.0, le=10.0)
    optimizer_scale: float = Field(1.0, gt=0.0, le=10.0)
    host_launch_scale: float = Field(1.0, gt=0.0, le=10.0, description=(
        "host time per kernel of a training step relative to inference's host_launch_s (autograd's engine "
        "issues the backward kernels)"))
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
        """The kind's correction; ``grouped_gemm`` without its own takes ``gemm``'s (as profiles fall back)."""
        if kind not in self.efficiency and kind == "grouped_gemm":
            kind = "gemm"
        return self.efficiency.get(kind, EfficiencyCorrection())


def is_stack_data(data: Any) -> bool:
    return isinstance(data, dict) and "stack_schema_version" in data


def stack_from_dict(data: dict[str, Any], field: str = "calibration") -> StackProfile:
    version = data.get("stack_schema_version")
    if version != STACK_SCHEMA_VERSION:
        raise InputError(f"{field}.stack_schema_version", f"{version!r} is not supported (expected {STACK_SCHEMA_VERSION})")
    return validated(StackProfile, data, field)


def read_json(path: str | Path, field: str, max_bytes: int = PROFILE_LIMIT_BYTES) -> Any:
    """A JSON file read through ``hwmodels.io`` (regular files under a size cap only: no FIFO, no device)."""
    text = read_text_bounded(path, max_bytes, field)
    try:
        return json.loads(text)
    except ValueError:
        raise InputError(field, f"{str(path)!r} is not valid JSON") from None
