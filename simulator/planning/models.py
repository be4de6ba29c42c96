"""The planner's typed edges: what the user asks (``PlanRequest``) and what comes back (``PlanResult``,
a list of ``Plan``s sorted by $/hour, the Pareto set, and the search's size and time)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from hwmodels.errors import InputError, validated

SWITCHES = ("fp8_weights", "fp8_kv", "speculative", "prefix_cache")


class PlanRequest(BaseModel):
    """Traffic, SLOs, the space to search and the constraints. Lengths are fixed token counts (the
    fast path's steady state uses their means)."""

    model_config = ConfigDict(extra="forbid")
    model: str | dict[str, Any] = "llama-3.1-8b"
    rate: PositiveFloat = Field(description="requests/s")
    prompt_len: PositiveInt | str = Field(1024, description="tokens per prompt: N, uniform:A,B or lognormal:MEDIAN,SIGMA")
    output_len: PositiveInt | str = Field(256, description="tokens per response, as prompt_len")
    slo_ttft_s: PositiveFloat = 2.0
    slo_tpot_s: PositiveFloat = 0.05
    percentile: float = Field(90.0, gt=0.0, lt=100.0, description="SLO percentile, e.g. 90 for p90")
    gpus: list[str] | None = Field(None, description="catalog accelerators; default every one with a price")
    max_gpus: PositiveInt = Field(64, le=4096)
    max_tp: PositiveInt = Field(8, le=8, description="largest tensor-parallel degree inside one node")
    max_nodes: PositiveInt = Field(2, le=64, description="nodes one replica may span: TP over n nodes, or TP in a "
                                   "node x PP n, for n = 2, 4, ... up to this")
    pp_options: list[PositiveInt] = Field(default_factory=lambda: [1])
    batch_caps: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64, 128, 256, 512])
    techniques: list[dict[str, Any]] = Field(default_factory=list, description="switches the plan may turn on")
    disaggregate: bool = Field(True, description="also search prefill/decode splits xPyD")
    max_num_batched_tokens: PositiveInt = Field(2048, description="token budget per step (vLLM's default)")
    chunked_prefill: bool = True
    max_load: float = Field(0.9, gt=0.0, le=1.0, description="highest rate / capacity a plan may run at (the fast "
                            "path is validated against the DES up to 0.8; queues grow without bound towards 1)")
    budget_usd_per_hour: PositiveFloat | None = None
    power_budget_w: PositiveFloat | None = None
    power_provisioning: Literal["observed", "tdp"] = Field(
        "observed", description="provision power at the plan's observed draw (POLCA) or at TDP")
    prices: str | None = Field(None, description="YAML file of contract prices (gpu: usd_per_gpu_hour)")
    calibration: str = "auto"
    verify: int = Field(3, ge=0, le=64, description="plans simulated with the DES")
    refine: bool = Field(False, description="after verification, search the cheapest verified co-located layout's "
                         "replicas downwards with the DES (bisection; the fast path may hold more than it needs)")
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    num_requests: PositiveInt = Field(2000, le=1_000_000, description="requests per verification run")
    seed: int = 0

    @field_validator("techniques")
    @classmethod
    def _known(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for entry in value:
            if entry.get("name") not in SWITCHES:
                raise ValueError(f"unknown technique {entry.get('name')!r}; choose from {', '.join(SWITCHES)}")
        return value

    @field_validator("prompt_len", "output_len")
    @classmethod
    def _length(cls, value: int | str) -> int | str:
        if isinstance(value, str):
            if value.startswith("trace") or not value.strip():
                raise ValueError("the planner takes N, uniform:A,B or lognormal:MEDIAN,SIGMA (a trace has no rate to plan)")
            from simulator.serving.workload import Workload

            try:
                Workload.from_dict({"rate": 1.0, "prompt_len": value})
            except InputError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _within_the_context(self) -> "PlanRequest":
        """Requests longer than the model's context (max_position_embeddings, vLLM's default max_model_len)
        are rejected by an engine, so no plan could serve them: an error naming the share beyond it."""
        from simulator.models import get_model

        try:
            limit = get_model(self.model).max_position_embeddings
        except InputError:
            return self  # an unknown model is named where the space is built
        if not limit:
            return self
        prompt, output = self._draws()
        beyond = float(np.mean(prompt + output > limit))
        if beyond > 0.0:
            share = "every request exceeds" if beyond == 1.0 else f"{beyond:.1%} of the requests exceed"
            raise ValueError(f"prompt_len + output_len: {share} {self.model}'s context of {limit:,} tokens "
                             "(max_position_embeddings, an engine's max_model_len); an engine rejects them")
        return self

    def lengths(self) -> tuple[float, float, float]:
        """(mean prompt tokens, squared coefficient of variation of the prompt, mean output tokens), from
        20,000 draws of the serving workload's own length sampler (the DES draws the same way)."""
        prompt, output = self._draws()
        return float(prompt.mean()), float(prompt.var() / prompt.mean() ** 2), float(output.mean())

    def _draws(self) -> tuple[np.ndarray, np.ndarray]:
        """(prompt, output) tokens of 20,000 draws of the serving workload's own length sampler (the DES draws
        the same way); one each for fixed lengths."""
        if isinstance(self.prompt_len, int) and isinstance(self.output_len, int):
            return np.array([float(self.prompt_len)]), np.array([float(self.output_len)])
        from simulator.serving.workload import Workload

        reqs = Workload.from_dict({"rate": self.rate, "num_requests": 20_000, "prompt_len": self.prompt_len,
                                   "output_len": self.output_len, "seed": self.seed}).requests()
        return reqs["prompt_tokens"].astype(float), reqs["output_tokens"].astype(float)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlanRequest":
        return validated(cls, data, "plan")


class Verification(BaseModel):
    """The DES's verdict on a plan at the requested rate."""

    ttft_pct_s: float
    tpot_pct_s: float
    ttft_p50_s: float
    tpot_p50_s: float
    throughput_tokens_per_s: float
    completed: int
    rejected: int
    meets_slo: bool


class Plan(BaseModel):
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    ep: int = 1
    replicas: int
    nodes: int = Field(1, description="nodes one (prefill) replica spans")
    disaggregate: str | None = Field(None, description="'xPyD' prefill and decode replicas, else co-located")
    decode_gpu: str | None = None
    decode_tp: int | None = None
    decode_scenario: dict[str, Any] | None = Field(None, description="a split's decode pool when its layout differs")
    techniques: list[str]
    max_num_seqs: int
    scenario: dict[str, Any] = Field(description="a scenario roofsim serve/predict accept as is")
    serve_config: dict[str, Any] = Field(description="the engine settings the verification ran with")
    serve_command: str = Field("", description="the verification as a `roofsim serve` command line, the "
                               "scenario saved as scenario.json")
    ttft_p50_s: float
    tpot_p50_s: float
    ttft_p90_s: float = Field(description="TTFT at the requested percentile (key kept for the JSON contract)")
    tpot_p90_s: float = Field(description="TPOT at the requested percentile (key kept for the JSON contract)")
    percentile: float
    load: float = Field(description="request rate / the fast path's capacity")
    batch_mean: float
    throughput_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    usd_per_hour: float
    usd_per_million_tokens: float
    usd_per_million_input_tokens: float
    usd_per_million_output_tokens: float
    power_w: float
    power_provisioned_w: float
    joules_per_token: float
    joules_per_output_token: float
    energy_kwh_per_day: float
    meets_slo_fast_path: bool
    verified: bool | None = Field(None, description="the DES says it meets both SLOs; None: not simulated")
    verification: Verification | None = None
    bound: str = Field("", description="what limits the plan")
    cheaper_if: str = Field("", description="the single change that would make it cheaper")
    vllm_command: str = ""
    sglang_command: str = ""

    def layout(self, nodes: str = " ({} nodes each)") -> str:
        """'xPyD' for a split, else replicas x TP (PP, EP), with ``nodes`` formatted with the nodes one replica
        spans when it spans more than one."""
        if self.disaggregate:
            return self.disaggregate
        return (f"{self.replicas}x tp{self.tp}" + (f" pp{self.pp}" if self.pp > 1 else "")
                + (f" ep{self.ep}" if self.ep > 1 else "") + (nodes.format(self.nodes) if self.nodes > 1 else ""))


class PlanResult(BaseModel):
    request: PlanRequest
    plans: list[Plan]
    pareto: list[Plan]
    cheapest: Plan | None
    searched_configs: int
    search_time_s: float
    verify_time_s: float
    backend: str
    rejected_cheaper: list[dict[str, Any]] = Field(
        default_factory=list, description="the configurations just cheaper than the cheapest plan and why each fails")
    why_none: str | None = Field(None, description="when no plan is found: why, and the change that would give one")
    refined: list[Plan] = Field(default_factory=list, description="with refine: the DES runs of fewer replicas of the "
                                "cheapest verified layout, in the order simulated")
    refine_time_s: float = 0.0
