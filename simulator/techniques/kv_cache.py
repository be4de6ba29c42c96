"""KV-cache compression and placement: fewer bits, fewer tokens, shared prefixes, host memory.

Token-level reductions (eviction, DuoAttention's streaming heads) go through the ``kv_tokens`` hook,
so they shrink device memory and the bytes decode attention reads together; bit-level ones change
the bytes per element; placement ones change where the bytes live and what moves per step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from costmodels import attention as attn
from costmodels import gemm as gemm_ops
from costmodels.roofline import price
from simulator.step import StepOp
from simulator.techniques import Technique, register


@register
class KVQuant(Technique):
    """Quantised KV cache: ``bits`` per element plus a scale (and zero point) per group of ``group_size``.

    bytes/element = bits/8 + scale_bits · (1 + zero_point) / (8 · group_size); decode attention
    dequantises on the fly (2 FLOPs per element read, a multiply-add)."""

    name = "kv_quant"
    family = "kv cache"
    citation = ("Liu et al. 2024, KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache, arXiv 2402.02750; "
                "Hooper et al. 2024, KVQuant, arXiv 2401.18079")
    summary = "KV bytes/element -> bits/8 + group scale overhead; dequantisation FLOPs in decode attention"

    bits: Literal[8, 4, 2] = Field(4, description="bits per cached element")
    group_size: PositiveInt | None = Field(64, description="elements sharing one scale; none = per-tensor scale")
    scale_bits: PositiveInt = Field(16, description="bits of each scale (and zero point)")
    zero_point: bool = Field(True, description="asymmetric quantisation: a zero point per group besides the scale")

    @property
    def bytes_per_element(self) -> float:
        overhead = 0.0 if self.group_size is None else self.scale_bits * (1 + self.zero_point) / self.group_size
        return (self.bits + overhead) / 8.0

    def apply_deployment(self, dep):
        return replace(dep, kv_bytes=self.bytes_per_element)

    def apply_ops(self, ops, shape, dep):
        out = []
        for op in ops:
            if op.kind == "attention_decode" and np.any(op.kv_read_bytes):
                elems = np.asarray(op.kv_read_bytes, dtype=float) / dep.kv_bytes
                op = replace(op, flops=op.flops + 2.0 * elems)
            out.append(op)
        return out


@register
class KVEviction(Technique):
    """Token eviction to a fixed KV budget per layer and head: attention sinks + recent tokens + heavy
    hitters (Scissorhands' pivotal tokens, H2O's heavy hitters, StreamingLLM's sink + window).

    kept(s) = min(s, budget_tokens), or budget_fraction · s; decode reads only the kept tokens. H2O and
    Scissorhands rank tokens by accumulated attention, so decode also writes each kept token's attention
    weight per head and keeps an fp32 score per kept token per KV head; StreamingLLM needs neither.
    Prefill attends in full (the cache is compressed after it)."""

    name = "kv_eviction"
    family = "kv cache"
    citation = ("Liu et al. 2023, Scissorhands: Exploiting the Persistence of Importance Hypothesis for LLM KV Cache "
                "Compression at Test Time, arXiv 2305.17118; Zhang et al. 2023, H2O, arXiv 2306.14048; "
                "Xiao et al. 2023, StreamingLLM, arXiv 2309.17453")
    summary = "KV tokens kept -> min(s, budget) or fraction x s: memory and decode attention reads"

    budget_tokens: PositiveInt | None = Field(None, description="tokens kept per layer (sink + recent + heavy hitters)")
    budget_fraction: float | None = Field(0.2, gt=0.0, le=1.0, description="kept share of the context, when "
                                          "budget_tokens is not given (Scissorhands' 5x: 0.2)")
    sink_tokens: NonNegativeInt = Field(4, description="first tokens always kept (part of the budget)")
    policy: Literal["h2o", "scissorhands", "streaming"] = Field(
        "h2o", description="how tokens are ranked: accumulated attention (h2o, scissorhands) or position (streaming)")

    @model_validator(mode="after")
    def _one_budget(self) -> "KVEviction":
        if self.budget_tokens is not None:
            if "budget_fraction" in self.model_fields_set and self.budget_fraction is not None:
                raise ValueError("give one of budget_tokens and budget_fraction, not both")
            object.__setattr__(self, "budget_fraction", None)
        elif self.budget_fraction is None:
            raise ValueError("give budget_tokens or budget_fraction")
        if self.budget_tokens is not None and self.budget_tokens < self.sink_tokens:
            raise ValueError(f"budget_tokens={self.budget_tokens} is below sink_tokens={self.sink_tokens}")
        return self

    def kv_tokens(self, tokens, kind):
        if self.budget_fraction is not None:
            return self.budget_fraction * np.asarray(tokens, dtype=float)
        return np.minimum(tokens, self.budget_tokens)

    @property
    def _scored(self) -> bool:
        return self.policy != "streaming"

    def extra_request_bytes(self, dep, tokens):
        """Accumulated attention score (fp32) per kept token per KV head per layer."""
        if not self._scored:
            return 0.0
        total = 0.0
        for kind, count in dep.kind_counts().items():
            if kind != "linear":
                stored = 1 if kind == "cross" else count
                total = total + stored * dep.kv_tokens(tokens, kind) * dep.kv_heads_local * 4.0
        return total / dep.pp

    def apply_ops(self, ops, shape, dep):
        if not self._scored or shape.phase != "decode":
            return ops
        out = []
        for op in ops:
            if op.kind == "attention_decode" and np.any(op.kv_read_bytes):
                kept = np.asarray(op.kv_read_bytes, dtype=float) / (dep.kv_elems_per_token_layer_local * dep.kv_bytes)
                # write each kept token's attention weight per query head, read-modify-write its score
                extra = kept * (dep.q_heads_local * 4.0 + dep.kv_heads_local * 8.0)
                op = replace(op, hbm_bytes=op.hbm_bytes + extra)
            out.append(op)
        return out


@register
class DuoAttention(Technique):
    """DuoAttention: a ``retrieval_fraction`` r of heads keep the full KV cache; the other (streaming)
    heads keep only ``sink_tokens`` attention sinks and the ``recent_tokens`` most recent tokens.

    kept(s) = r · s + (1 - r) · min(s, sink + recent), for memory and decode reads alike; prefill pairs
    = r · causal + (1 - r) · streaming (block-sparse local attention in the streaming heads)."""

    name = "duo_attention"
    family = "kv cache"
    citation = ("Xiao et al. 2024, DuoAttention: Efficient Long-Context LLM Inference with Retrieval and Streaming "
                "Heads, arXiv 2410.10819")
    summary = "KV tokens -> r x s + (1-r) x (sink + recent) per layer; prefill pairs likewise"

    retrieval_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of heads with a full KV cache")
    sink_tokens: NonNegativeInt = Field(64, description="attention sinks a streaming head keeps (repo default 64)")
    recent_tokens: NonNegativeInt = Field(256, description="recent tokens a streaming head keeps (repo default 256)")

    @property
    def local(self) -> int:
        return self.sink_tokens + self.recent_tokens

    def kv_tokens(self, tokens, kind):
        t = np.asarray(tokens, dtype=float)
        r = self.retrieval_fraction
        return r * t + (1.0 - r) * np.minimum(t, self.local)

    def attention_pairs(self, pairs, shape, kind):
        streaming = np.minimum(pairs, attn.attended_pairs(shape.new_tokens, shape.past_tokens, max(self.local, 1)))
        r = self.retrieval_fraction
        return r * pairs + (1.0 - r) * streaming


@register
class PrefixCache(Technique):
    """Prefix caching: a ``hit_rate`` share of every prompt is a cached prefix (a system prompt, earlier
    turns), shared by all requests on the GPU.

    Prefill runs only the (1 - h) · s new tokens, attending to the h · s cached ones. The prefix's KV is
    stored once per GPU, not per request; with ``read_once`` a shared-prefix attention kernel (Hydragen,
    FlashInfer cascade) also reads it once per decode step for the whole batch."""

    name = "prefix_cache"
    family = "kv cache"
    citation = ("Zheng et al. 2023, SGLang: Efficient Execution of Structured Language Model Programs "
                "(RadixAttention), arXiv 2312.07104; Juravsky et al. 2024, Hydragen, arXiv 2402.05099")
    summary = "prefill runs (1-h) of the prompt; the prefix KV is stored once per GPU (optionally read once)"

    hit_rate: float = Field(0.5, ge=0.0, lt=1.0, description="share of each prompt/context that is the shared prefix")
    read_once: bool = Field(False, description="decode reads the shared prefix once per batch (cascade attention)")

    def step_shape(self, shape, dep):
        if shape.phase != "prefill":
            return shape
        cached = self.hit_rate * np.asarray(shape.new_tokens, dtype=float)
        return replace(shape, new_tokens=shape.new_tokens - cached, past_tokens=shape.past_tokens + cached)

    def kv_shared_fraction(self) -> float:
        return self.hit_rate

    def kv_shared_read_once(self) -> bool:
        return self.read_once


@register
class KVOffload(Technique):
    """KV offload: a ``fraction`` of every request's KV cache lives in host memory; each decode step
    brings it back over the host link (FlexGen) or recomputes it from the layer inputs kept on the host
    (ALISA), whichever ``policy`` says (``auto``: the cheaper, per point).

    Device KV = (1 - f + 2f/L) · KV (a double-buffered staging area for one layer). Per step, fetching
    moves f · KV bytes; recomputing moves the f · s · d_model hidden states and runs their K/V
    projections (2 · d_model · kv_elems FLOPs per token per layer)."""

    name = "kv_offload"
    family = "kv cache"
    citation = ("Sheng et al. 2023, FlexGen: High-Throughput Generative Inference of Large Language Models with a "
                "Single GPU, arXiv 2303.06865; Zhao et al. 2024, ALISA, arXiv 2403.17312")
    summary = "device KV -> (1-f) x KV + staging; per step f x KV over the host link, or recompute"

    fraction: float = Field(0.5, gt=0.0, le=1.0, description="share of each request's KV held in host memory")
    policy: Literal["fetch", "recompute", "auto"] = Field("auto", description="how offloaded KV is brought back")

    def kv_resident_fraction(self, dep) -> float:
        return 1.0 - self.fraction + 2.0 * self.fraction / dep.model.num_layers

    def apply_ops(self, ops, shape, dep):
        if shape.phase != "decode":
            return ops
        kv_bytes = sum(np.asarray(op.kv_read_bytes, dtype=float) * op.count for op in ops if op.kind == "attention_decode")
        if not np.any(kv_bytes):
            return ops
        host = dep.gpu.host_link
        link = {"link_latency_s": host.latency_s, "link_bandwidth_bytes_per_s": host.bandwidth_bytes_per_s}
        fetched = self.fraction * kv_bytes
        fetch = StepOp("kv_offload.fetch", "host_transfer", 1.0, link_bytes=fetched, **link)
        tokens = fetched / (dep.kv_elems_per_token_layer_local * dep.kv_bytes)  # offloaded (token, layer) pairs
        h, act, kv_out = dep.model.hidden_size, dep.act_bytes, dep.kv_elems_per_token_layer_local
        load = StepOp("kv_offload.load_hidden", "host_transfer", 1.0, link_bytes=tokens * h * act, **link)
        # the K/V projections of the offloaded (token, layer) pairs; their weights are the step's own
        recompute = StepOp("kv_offload.recompute_kv", "gemm", 1.0, flops=gemm_ops.gemm_flops(tokens, h, kv_out),
                           hbm_bytes=gemm_ops.gemm_bytes(tokens, h, kv_out, act, 0.0), peak_flops_per_s=dep.peak_flops_per_s,
                           hbm_bandwidth_bytes_per_s=dep.hbm_bandwidth_bytes_per_s)
        if self.policy == "fetch":
            return [*ops, fetch]
        if self.policy == "recompute":
            return [*ops, load, recompute]
        t_fetch = price(fetch, dep.profile).time_s
        t_recompute = price(load, dep.profile).time_s + price(recompute, dep.profile).time_s
        use_fetch = t_fetch <= t_recompute
        fetch_count = float(use_fetch) if np.ndim(use_fetch) == 0 else np.where(use_fetch, 1.0, 0.0)
        return [*ops, replace(fetch, count=fetch_count), replace(load, count=1.0 - fetch_count),
                replace(recompute, count=1.0 - fetch_count)]
