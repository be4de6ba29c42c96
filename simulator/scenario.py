"""The user's question as a validated object: ``Scenario`` (JSON/YAML or Python)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hwmodels.dtypes import DType
from hwmodels.errors import InputError, validated
from hwmodels.io import read_text_bounded, safe_load_bounded
from simulator.bounds import Batch, GPUs, Tokens

Phase = Literal["prefill", "decode", "generate"]
OverlapPolicy = Literal["serial", "overlapped"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HardwareConfig(_Section):
    gpu: str | dict[str, Any] = Field("h100-sxm", description="catalog name, YAML/JSON path, or inline spec")
    num_gpus: GPUs = 1
    node: str | None = Field(None, description="catalog node (GPUs per node, scale-up link, host memory); "
                             "default: the GPU's own node when the catalog has one")
    network: str | None = Field(None, description="scale-out network between nodes; default: the node's own")
    num_nodes: GPUs | None = Field(None, description="nodes in the cluster; default: as many as num_gpus needs")


class OverlapConfig(_Section):
    """What each parallel boundary's communication overlaps with (simulator/parallel/overlap.py)."""

    tp: Literal["none", "ladder"] = Field("none", description="TP all-reduce: exposed, or behind the next "
                                          "block's compute (Ladder-residual)")
    ep: Literal["none", "shared_experts", "two_batch"] = Field(
        "none", description="EP all-to-all: exposed, behind the shared experts, or behind the other micro-batch")
    pp: Literal["none", "next_microbatch"] = Field("next_microbatch", description="stage send/recv")
    cp: Literal["none", "attention"] = Field("attention", description="ring-attention KV/Q passes")


class ParallelismConfig(_Section):
    tp: GPUs | None = Field(None, description="tensor-parallel degree; default num_gpus / (pp x cp)")
    pp: GPUs = 1
    cp: GPUs = Field(1, description="context-parallel GPUs a prompt's sequence is split over (prefill)")
    cp_method: Literal["ring", "tokenring"] = Field("ring", description="ring attention (KV passes one way) "
                                                    "or TokenRing (Q one way, partial outputs back)")
    ep: GPUs = Field(1, description="expert-parallel degree (divides the routed experts)")
    expert_tp: GPUs | None = Field(None, description="GPUs one expert is split over; default tp if ep = 1 "
                                          "else 1")
    sp: bool = Field(False, description="Megatron sequence parallelism")
    microbatches: Batch | None = Field(None, description="pipeline micro-batches in flight; default pp")
    collective_algorithm: Literal["auto", "ring", "tree", "hierarchical"] = "auto"
    order: list[Literal["tp", "cp", "edp", "pp", "dp"]] = Field(
        ["tp", "cp", "edp", "pp", "dp"], description="rank numbering, innermost first (consecutive ranks share a "
        "node): tp, cp, edp (attention replicas one EP group joins), pp, dp")
    overlap: OverlapConfig = OverlapConfig()


class PrecisionConfig(_Section):
    weights: DType = "bf16"
    kv_cache: DType = "bf16"
    compute: DType = Field("bf16", description="dtype whose tensor-core peak the matmuls run at")


class WorkloadConfig(_Section):
    phase: Phase = "decode"
    batch_size: Batch = Field(1, description="sequences per model replica (at most 1,000,000)")
    prompt_len: Tokens = Field(1024, description="tokens per prompt (prefill, generate; at most 2^24)")
    context_len: Tokens = Field(4096, description="tokens already cached per sequence (decode; at most 2^24)")
    output_len: Tokens = Field(256, description="tokens generated per sequence (generate; at most 2^24)")


class Scenario(_Section):
    """Everything roofsim needs to answer one question. Every field has a default."""

    model: str | dict[str, Any] = Field("llama-3.1-8b", description="preset name, config.json path, or inline spec")
    hardware: HardwareConfig = HardwareConfig()
    parallelism: ParallelismConfig = ParallelismConfig()
    precision: PrecisionConfig = PrecisionConfig()
    calibration: str | dict[str, Any] = Field(
        "auto", description="'auto' (measured profile for the GPU if shipped, else 'default'), 'peak', 'default', or a path"
    )
    workload: WorkloadConfig = WorkloadConfig()
    techniques: list[dict[str, Any]] = Field(default_factory=list)
    memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="fraction of HBM the engine may use (vLLM gpu_memory_utilization)"
    )
    overlap: OverlapPolicy = Field(
        "serial", description="'serial' sums operator times; 'overlapped' takes the busiest resource (NanoFlow)"
    )

    @field_validator("techniques")
    @classmethod
    def _named(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, item in enumerate(value):
            if not isinstance(item.get("name"), str):
                raise ValueError(f"entry {i} has no 'name'")
        return value

    @property
    def tp(self) -> int:
        par = self.parallelism
        return par.tp or max(1, self.hardware.num_gpus // (par.pp * par.cp))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scenario":
        """Validate a mapping; errors become one-line ``InputError``s naming the field."""
        if not isinstance(data, dict):
            raise InputError("scenario", "expected a mapping")
        return validated(cls, data)

    @classmethod
    def from_file(cls, path: str | Path) -> "Scenario":
        """Load a YAML or JSON scenario file."""
        return cls.from_dict(read_scenario_file(path))

    def with_overrides(self, **dotted: Any) -> "Scenario":
        """A copy with fields replaced by dotted path, e.g. ``{"workload.batch_size": 8}``."""
        data = self.model_dump()
        for path, value in dotted.items():
            node, cls = data, type(self)
            *parents, leaf = path.split(".")
            for i, key in enumerate([*parents, leaf]):
                fields = cls.model_fields if isinstance(cls, type) and issubclass(cls, BaseModel) else {}
                where = ".".join([*parents, leaf][:i])
                if not fields:
                    raise InputError(path, f"{where} is a value, not a section with fields")
                if key not in fields:
                    raise InputError(path, f"unknown field {key!r}{' in ' + where if where else ''}; "
                                           f"known: {', '.join(fields)}")
                if key != leaf:
                    node, cls = node[key], fields[key].annotation
            node[leaf] = value
        return Scenario.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def read_scenario_file(path: str | Path) -> Any:
    """The parsed contents of a YAML or JSON scenario file, read with the size bound (empty: ``{}``)."""
    text = read_text_bounded(path, field="scenario")
    try:
        data = safe_load_bounded(text, "scenario", repr(str(path)))
    except yaml.YAMLError as exc:
        raise InputError("scenario", f"cannot read {str(path)!r}: {exc.__class__.__name__}") from None
    return data or {}
