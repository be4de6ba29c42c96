"""What a serving simulation reports: ``ServeResult`` (pydantic), whose JSON form is a stable contract.

Metric definitions are vLLM's (``vllm bench serve``, https://docs.vllm.ai/en/stable/contributing/benchmarks/
and vLLM's request metrics, https://docs.vllm.ai/en/stable/design/metrics/):

* TTFT = first token time - arrival; e2e = last token time - arrival; queueing = first scheduled - arrival.
* TPOT = (e2e - TTFT) / (output tokens - 1), over requests with more than one output token.
* ITL: every gap between consecutive tokens of a request, pooled over all requests.
* throughput: completed requests, input + output tokens, and output tokens, per second of ``duration_s``
  (first arrival to last completion).
* SLO attainment: share of arrived requests (rejected ones count as misses) whose TTFT and TPOT both meet
  their targets; goodput: such requests per second (DistServe, Zhong et al. 2024, arXiv 2401.09670, §2).

Statistics are mean and the 50th/90th/99th percentiles (numpy's linear interpolation, as vLLM's
benchmark computes them). ``request_rate`` is the offered arrival rate. ``saturated``: in the second half of the
arrival window fewer than 93% of the output tokens asked for were produced (``metrics.is_saturated``).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr

CONTRACT = ("completed", "rejected", "duration_s", "request_rate", "throughput_tokens_per_s", "output_tokens_per_s",
            "ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s", "slo_attainment", "goodput_req_per_s", "preemptions",
            "kv_transfer_s")


class Stats(BaseModel):
    model_config = ConfigDict(frozen=True)
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, values) -> "Stats":
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return cls()
        p50, p90, p99 = np.percentile(v, [50, 90, 99])
        return cls(mean=float(v.mean()), p50=float(p50), p90=float(p90), p99=float(p99))


class ReplicaReport(BaseModel):
    model_config = ConfigDict(frozen=True)
    index: int
    group: str  # "main", "prefill", "decode", "small"
    model: str
    gpu: str
    gpus: int
    kv_blocks: int
    steps: int
    busy_s: float
    mean_batch_size: float
    mean_kv_occupancy: float
    preemptions: int
    energy_j: float  # busy seconds x GPUs x TDP


class ServeResult(BaseModel):
    """The serving simulation's answer. The contract keys come first; the rest are extensions."""

    model_config = ConfigDict(frozen=True)

    completed: int
    rejected: int
    duration_s: float
    request_rate: float
    throughput_tokens_per_s: float
    output_tokens_per_s: float
    ttft_s: Stats
    tpot_s: Stats
    itl_s: Stats
    e2e_s: Stats
    queue_s: Stats
    slo_attainment: float | None
    goodput_req_per_s: float
    preemptions: int
    kv_transfer_s: Stats
    # extensions
    kv_transfer_exposed_s: Stats  # the part of each transfer after its prefill ended (layerwise hides the rest)
    requests_per_s: float
    input_tokens_per_s: float
    rejections: dict[str, int]
    saturated: bool
    mean_batch_size: float
    mean_kv_occupancy: float
    cached_prompt_tokens: int
    energy_j: float  # busy GPU-seconds x TDP: an upper bound on the GPUs' energy (idle power not counted)
    energy_per_request_j: float | None
    escalated: int
    replicas: list[ReplicaReport]
    _records: np.ndarray = PrivateAttr()
    _timeline: dict[str, np.ndarray] = PrivateAttr()

    @property
    def records(self) -> np.ndarray:
        """One row per arrived request (``simulator.serving.ledger.RECORD_DTYPE``)."""
        return self._records

    @property
    def timeline(self) -> dict[str, np.ndarray]:
        """One row per engine step: replica, start_s, duration_s, decode, chunk_tokens, kv_blocks_used,
        kv_occupancy, waiting, running, tokens_out."""
        return self._timeline

    def table(self) -> list[dict]:
        """Per-request records as a list of rows (a table)."""
        names = self._records.dtype.names
        return [dict(zip(names, row.tolist())) for row in self._records]

    def contract(self) -> dict:
        """The JSON contract: the contract keys, then the extensions."""
        return self.model_dump(mode="json")
