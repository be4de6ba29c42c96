"""Attention shape: fewer KV heads, a latent KV, local windows, recurrent states, one shared cache.

Each changes what a layer caches per token (or makes it constant), and with it both the KV memory
and the bytes decode attention reads per step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from costmodels.gemm import gemm_bytes, gemm_flops
from hwmodels.dtypes import BYTES_PER_ELEMENT, DType
from simulator.models.spec import MLASpec
from simulator.step import StepOp
from simulator.techniques import Technique, register


@register
class GQA(Technique):
    """Grouped-query attention: ``num_kv_heads`` K/V heads shared by groups of query heads.

    KV per token per layer = 2 · n_kv · d_h elements (MHA: n_kv = n_heads; MQA: n_kv = 1), and the K/V
    projections shrink to n_kv · d_h outputs each. Converting MHA to GQA mean-pools the K/V heads of
    each group (uptraining, Ainslie et al. 2023, §2.1)."""

    name = "gqa"
    family = "attention shape"
    citation = "Ainslie et al. 2023, GQA: Training Generalized Multi-Query Transformer Models, arXiv 2305.13245"
    summary = "KV heads -> num_kv_heads: KV bytes/token and K/V projections scale by n_kv / n_kv_before"

    num_kv_heads: PositiveInt = Field(8, description="K/V heads after conversion (1 = multi-query attention)")

    def apply_model(self, model):
        if model.mla:
            raise self.error("num_kv_heads", f"{model.name} uses latent attention (MLA); it has no KV heads to group")
        if model.num_attention_heads % self.num_kv_heads:
            raise self.error("num_kv_heads", f"{self.num_kv_heads} does not divide num_attention_heads="
                             f"{model.num_attention_heads}")
        return model.model_copy(update={"num_kv_heads": self.num_kv_heads})


@register
class MLA(Technique):
    """Multi-head latent attention: the cache holds one latent of ``kv_lora_rank`` elements plus a
    decoupled RoPE key of ``qk_rope_head_dim`` per token per layer, shared by all heads.

    KV per token = L · (d_c + d_rope) elements instead of 2 · L · n_kv · d_h. On a model that already
    uses MLA (DeepSeek-V2/V3) it resizes the latent; on a GQA/MHA model it is the TransMLA conversion
    (Meng et al. 2025): keys split into d_h - d_rope position-free dims and d_rope RoPE dims, values
    keep d_h, and decode attends in the latent space (weight absorption), so its attention FLOPs per
    cached token grow to 2 · n_heads · (2 · d_c + d_rope) while the bytes shrink."""

    name = "mla"
    family = "attention shape"
    citation = ("DeepSeek-AI 2024, DeepSeek-V2, arXiv 2405.04434 (MLA); Meng et al. 2025, TransMLA: "
                "Multi-Head Latent Attention Is All You Need, arXiv 2502.07864")
    summary = "KV bytes/token -> L x (kv_lora_rank + rope dim); decode attends in the latent space"

    kv_lora_rank: PositiveInt = Field(512, description="latent KV width d_c (DeepSeek-V2/V3: 512)")
    qk_rope_head_dim: PositiveInt = Field(64, description="decoupled RoPE key width d_rope (DeepSeek: 64)")

    def apply_model(self, model):
        if model.mla:
            mla = model.mla.model_copy(update={"kv_lora_rank": self.kv_lora_rank,
                                               "qk_rope_head_dim": self.qk_rope_head_dim})
        else:
            if self.qk_rope_head_dim >= model.head_dim:
                raise self.error("qk_rope_head_dim", f"must be below head_dim={model.head_dim}")
            mla = MLASpec(kv_lora_rank=self.kv_lora_rank, qk_rope_head_dim=self.qk_rope_head_dim,
                          qk_nope_head_dim=model.head_dim - self.qk_rope_head_dim, v_head_dim=model.head_dim)
        return model.model_copy(update={"mla": mla})


@register
class SlidingWindow(Technique):
    """Sliding-window attention: local layers attend to (and cache) only the last ``window`` tokens.

    KV of a local layer = min(s, w) tokens; prefill pairs Σ_i min(i, w). ``global_every`` = n keeps
    every n-th layer global (Gemma 2: 2, Gemma 3: 6); 0 makes every layer local (Mistral 7B)."""

    name = "sliding_window"
    family = "attention shape"
    citation = ("Beltagy et al. 2020, Longformer, arXiv 2004.05150; Jiang et al. 2023, Mistral 7B, arXiv 2310.06825; "
                "Gemma Team 2024, Gemma 2, arXiv 2408.00118 (local/global interleaving)")
    summary = "local layers keep min(s, window) tokens: KV memory, decode reads and prefill pairs bounded"

    window: PositiveInt = Field(4096, description="tokens a local layer attends to")
    global_every: int = Field(0, ge=0, description="every n-th layer stays global; 0 = all layers local")

    def apply_model(self, model):
        n = self.global_every
        kinds = ["full" if n and (i + 1) % n == 0 else "sliding" for i in range(model.num_layers)]
        return model.model_copy(update={"sliding_window": self.window, "layer_types": kinds})


def spread_layers(num_layers: int, fraction: float) -> list[bool]:
    """``round(fraction · L)`` layers spread evenly: layer i is picked when floor((i+1)·f) > floor(i·f)."""
    return [int(np.floor((i + 1) * fraction + 1e-9)) > int(np.floor(i * fraction + 1e-9)) for i in range(num_layers)]


@register
class LinearAttention(Technique):
    """Linear attention in a fraction of the layers: a constant recurrent state per head instead of a KV
    cache (Based: a Taylor feature map, 1 + d' + d'² = 273 features for d' = 16; Mamba-style layers hold
    a d_state x d state).

    State per layer per sequence = n_heads · state_dim · (d_h + 1) elements (Σ φ(k)vᵀ and its
    normaliser Σ φ(k)); each token costs 4 · state_elems FLOPs per head (update and readout); decode
    reads and writes the state once per step. ``fraction`` of the layers are converted, spread evenly."""

    name = "linear_attention"
    family = "attention shape"
    citation = ("Arora et al. 2024, Simple linear attention language models balance the recall-throughput "
                "tradeoff (Based), arXiv 2402.18668")
    summary = "converted layers hold a constant state (n_heads x state_dim x (d_h+1)) instead of a KV cache"

    fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction of layers converted to linear attention")
    state_dim: PositiveInt = Field(273, description="feature dimension of the state per head (Based: 273)")
    state_dtype: DType = Field("fp32", description="storage format of the recurrent state")

    def apply_deployment(self, dep):
        picked = spread_layers(len(dep.layer_kinds), self.fraction)
        kinds = tuple("linear" if p else k for p, k in zip(picked, dep.layer_kinds))
        return replace(dep, attention_kinds=kinds, recurrent_state_elems=self.state_dim * (dep.model.head_dim + 1),
                       recurrent_state_bytes=BYTES_PER_ELEMENT[self.state_dtype])


@register
class YOCO(Technique):
    """You Only Cache Once: a decoder-decoder. The first half of the layers (self-decoder) use efficient
    attention with a constant cache; the second half (cross-decoder) all attend to ONE global KV cache
    that a single K/V projection makes from the self-decoder's output.

    KV memory = (N + L·c)·D instead of L·N·D: one layer's worth of KV per token plus a constant
    (window or retention state) per self-decoder layer. Prefill exits early: the cross-decoder runs
    only each prompt's last position. Cross-decoder layers have no K/V projections."""

    name = "yoco"
    family = "attention shape"
    citation = "Sun et al. 2024, You Only Cache Once: Decoder-Decoder Architectures for Language Models, arXiv 2405.05254"
    summary = "one global KV shared by the cross-decoder; self-decoder constant cache; prefill skips the cross-decoder"

    self_decoder: Literal["gated_retention", "sliding_window"] = Field(
        "gated_retention", description="efficient attention of the self-decoder (YOCO-gRet or YOCO-SWA)")
    window: PositiveInt = Field(1024, description="sliding window of the self-decoder (sliding_window only)")
    state_dtype: DType = Field("fp32", description="storage format of the retention state")

    def _split(self, num_layers: int) -> int:
        if num_layers < 2:
            raise self.error("", "needs at least 2 layers")
        return num_layers // 2

    def apply_model(self, model):
        n_self = self._split(model.num_layers)
        if self.self_decoder == "sliding_window":
            kinds = ["sliding"] * n_self + ["full"] * (model.num_layers - n_self)
            return model.model_copy(update={"sliding_window": self.window, "layer_types": kinds})
        return model

    def apply_deployment(self, dep):
        n_self = self._split(len(dep.layer_kinds))
        own = "sliding" if self.self_decoder == "sliding_window" else "linear"
        kinds = (own,) * n_self + ("cross",) * (len(dep.layer_kinds) - n_self)
        extra = {}
        if own == "linear":  # gated retention: a d_h x d_h state per head (RetNet-style)
            extra = {"recurrent_state_elems": dep.model.head_dim ** 2,
                     "recurrent_state_bytes": BYTES_PER_ELEMENT[self.state_dtype]}
        return replace(dep, attention_kinds=kinds, **extra)

    def _kv_out(self, dep):
        return dep.kv_elems_per_token_layer_local

    def extra_weight_bytes(self, dep):
        """The global K/V projection (cross layers have none)."""
        return dep.model.hidden_size * self._kv_out(dep) * dep.layer_weight_bytes / dep.pp

    def apply_ops(self, ops, shape, dep):
        """The global K/V projection over the self-decoder's output tokens, and its cache write."""
        tokens = shape.tokens
        h, n = dep.model.hidden_size, self._kv_out(dep)
        elems = h * n
        common = {"peak_flops_per_s": dep.peak_flops_per_s, "hbm_bandwidth_bytes_per_s": dep.hbm_bandwidth_bytes_per_s}
        proj = StepOp("yoco.global_kv_proj", "gemm", 1, flops=gemm_flops(tokens, h, n),
                      hbm_bytes=gemm_bytes(tokens, h, n, dep.act_bytes, dep.layer_weight_bytes), rows=tokens,
                      weight_elems=elems, weight_bytes=elems * dep.layer_weight_bytes, **common)
        write = StepOp("yoco.global_kv_write", "memory", 1, flops=0.0 * tokens,
                       hbm_bytes=tokens * n * (dep.act_bytes + dep.kv_bytes), **common)
        return [*ops, proj, write]
