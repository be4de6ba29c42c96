"""How the serving system is run: the scheduler's knobs, the router, disaggregation and SLOs.

Defaults follow vLLM where it has one: ``max_num_seqs`` 256 and ``block_size`` 16 (vLLM engine
arguments, https://docs.vllm.ai/en/stable/configuration/engine_args/), ``max_num_batched_tokens`` 2048
(``SchedulerConfig.DEFAULT_MAX_NUM_BATCHED_TOKENS``, https://docs.vllm.ai/en/stable/api/vllm/config/scheduler/),
chunked prefill on and preemption by recompute (V1's only mode,
https://docs.vllm.ai/en/stable/configuration/optimization/).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from hwmodels.errors import validated

Router = Literal["round_robin", "least_outstanding", "prefix_affinity"]


class CascadeConfig(BaseModel):
    """A model cascade (HybridServe, arXiv 2505.12566): every request is answered by ``small_model``
    first; a share ``escalate_fraction`` (those whose answer falls below the confidence threshold) is
    then served again by the scenario's (large) model."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    small_model: str | dict[str, Any] = Field(description="preset name, config.json path or inline spec")
    small_gpus: PositiveInt = Field(1, description="GPUs serving the small model (one replica each at tp=1)")
    escalate_fraction: float = Field(0.3, ge=0.0, le=1.0, description="share of requests the small model escalates")


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_num_seqs: PositiveInt = Field(256, le=65536, description="sequences per step (vLLM max_num_seqs)")
    max_num_batched_tokens: PositiveInt = Field(2048, le=1 << 20, description="token budget per step")
    chunked_prefill: bool = Field(True, description="mix prompt chunks with decodes; off: prefill-first steps")
    block_size: PositiveInt = Field(16, le=1024, description="tokens per KV block")
    prefix_caching: bool = Field(False, description="reuse cached blocks of shared prompt prefixes")
    preemption: Literal["recompute", "swap"] = "recompute"
    max_model_len: PositiveInt | None = Field(None, description="longest prompt + output accepted; default the model's")
    router: Router = "round_robin"
    disaggregate: str | None = Field(None, description="P:D prefill and decode replicas (Splitwise, DistServe)")
    decode_overrides: dict[str, Any] = Field(
        default_factory=dict, description="dotted scenario fields for the decode replicas, e.g. a GPU type or tp "
        "(Splitwise-HA: H100 prefill, A100 decode); then the replica counts are P and D whatever num_gpus says")
    kv_transfer: Literal["whole", "layerwise"] = Field("whole", description="after prefill, or overlapped per layer")
    kv_link: Literal["auto", "nvlink", "network"] = Field(
        "auto", description="link between prefill and decode replicas; auto: NVLink when they share a node")
    cascade: CascadeConfig | None = None
    slo_ttft_s: PositiveFloat | None = None
    slo_tpot_s: PositiveFloat | None = None

    @field_validator("disaggregate")
    @classmethod
    def _ratio(cls, value: str | None) -> str | None:
        if value is None:
            return value
        p, sep, d = value.partition(":")
        if not (sep and p.isdigit() and d.isdigit() and int(p) > 0 and int(d) > 0):
            raise ValueError(f"{value!r}: expected P:D with positive integers, e.g. 1:1")
        return value

    @model_validator(mode="after")
    def _budget(self) -> "ServeConfig":
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("max_num_batched_tokens must be at least max_num_seqs (every decode needs a token)")
        if self.decode_overrides and self.disaggregate is None:
            raise ValueError("decode_overrides needs disaggregate")
        if self.cascade is not None and self.disaggregate is not None:
            raise ValueError("a cascade with disaggregation is not modelled; choose one")
        return self

    @property
    def split(self) -> tuple[int, int] | None:
        if self.disaggregate is None:
            return None
        p, d = self.disaggregate.split(":")
        return int(p), int(d)

    @classmethod
    def from_dict(cls, data: dict) -> "ServeConfig":
        return validated(cls, data, "serve")
