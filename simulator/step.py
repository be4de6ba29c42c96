"""Decompose one forward step (a prefill or a decode iteration) into priced operators.

A step processes ``batch`` sequences, each adding ``new_tokens`` after ``past_tokens`` already in the
KV cache (prefill: new = prompt, past = 0; decode: new = 1, past = context). Layers of one kind are
identical, so each operator is built once with ``count`` = the number of layers that run it.
Attention projections and norms are shared by every layer; the attention core depends on the layer's
attention kind (full or sliding window); the feed-forward part on its MLP kind (dense or MoE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from costmodels import attention as attn
from costmodels.collectives import collective_traffic
from costmodels.elementwise import (
    ADD_FLOPS_PER_ELEMENT,
    GATED_ACT_FLOPS_PER_ELEMENT,
    NORM_FLOPS_PER_ELEMENT,
    ROTARY_FLOPS_PER_ELEMENT,
    elementwise,
    embedding_lookup,
)
from costmodels.gemm import gemm_bytes, gemm_flops
from costmodels.roofline import OpCost
from simulator.deployment import Deployment
from simulator.models.spec import Linear


@dataclass
class StepShape:
    """The workload of one step; fields broadcast against each other and the deployment's arrays."""

    batch: np.ndarray | float
    new_tokens: np.ndarray | float
    past_tokens: np.ndarray | float
    phase: str  # "prefill" or "decode"

    @property
    def tokens(self):
        return np.asarray(self.batch, dtype=float) * self.new_tokens

    @property
    def total_tokens(self):
        """Tokens per sequence in the cache after the step."""
        return np.asarray(self.past_tokens, dtype=float) + self.new_tokens


def expected_distinct_experts(tokens, num_experts: int, top_k: int):
    """Expected number of experts at least one of ``tokens`` is routed to, under uniform top-k routing:
    E·(1 - (1 - k/E)^T). Each expert misses a token with probability 1 - k/E, independently per token."""
    t = np.asarray(tokens, dtype=float)
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** t)


def _fused(linears: list[Linear]) -> list[tuple[str, list[Linear]]]:
    """Merge consecutive linears that read the same input (q/k/v, gate/up) into one GEMM, as engines do."""
    groups: list[list[Linear]] = []
    for lin in linears:
        prev = groups[-1][-1] if groups else None
        if prev and prev.in_features == lin.in_features and prev.tp == lin.tp and lin.tp != "row":
            groups[-1].append(lin)
        else:
            groups.append([lin])
    named = []
    for group in groups:
        prefix = group[0].name.split(".")[0] if group[0].name.count(".") == 1 else group[0].name.rsplit(".", 1)[0]
        parts = [lin.name.rsplit(".", 1)[1].removesuffix("_proj") for lin in group]
        joiner = "" if all(len(p) == 1 for p in parts) else "_"
        suffix = joiner.join(parts) + ("_proj" if group[0].name.endswith("_proj") else "")
        named.append((f"{prefix}.{suffix}" if len(group) > 1 else group[0].name, group))
    return named


class StepBuilder:
    """Builds the operator list of one step for a deployment."""

    def __init__(self, dep: Deployment, shape: StepShape):
        self.dep = dep
        self.shape = shape
        self.model = dep.model
        self.tokens = shape.tokens
        self.ops: list[OpCost] = []

    # --- operator constructors -------------------------------------------------------------------

    def _kernel(self, name, kind, count, flops, hbm_bytes):
        self.ops.append(OpCost(name, kind, count, flops=flops, hbm_bytes=hbm_bytes,
                               peak_flops_per_s=self.dep.peak_flops_per_s,
                               hbm_bandwidth_bytes_per_s=self.dep.hbm_bandwidth_bytes_per_s))

    def _elementwise(self, name, count, width, reads, writes, flops_per_element, tokens=None):
        tokens = self.tokens if tokens is None else tokens
        flops, nbytes = elementwise(tokens, width, reads, writes, flops_per_element, self.dep.act_bytes)
        self._kernel(name, "memory", count, flops, nbytes)

    def _gemm_group(self, name, group: list[Linear], count, tokens=None):
        tokens = self.tokens if tokens is None else tokens
        dep = self.dep
        k = dep.local_in(group[0])
        n = sum(dep.local_out(lin) for lin in group)
        bias = any(lin.bias for lin in group)
        self._kernel(name, "gemm", count, gemm_flops(tokens, k, n),
                     gemm_bytes(tokens, k, n, dep.act_bytes, dep.weight_bytes, bias=bias))

    def _collective(self, name, collective, count, message_bytes, ranks, link):
        traffic, steps = collective_traffic(collective, message_bytes, ranks)
        self.ops.append(OpCost(name, "collective", count, link_bytes=traffic,
                               link_latency_s=steps * link.latency_s,
                               link_bandwidth_bytes_per_s=link.bandwidth_bytes_per_s))

    def _tp_all_reduce(self, name, count, tokens=None):
        tokens = self.tokens if tokens is None else tokens
        message = np.asarray(tokens, dtype=float) * self.model.hidden_size * self.dep.act_bytes
        self._collective(name, "all_reduce", count, message, self.dep.tp, self.dep.gpu.intra_node_link)

    # --- the step --------------------------------------------------------------------------------

    def build(self) -> list[OpCost]:
        m, dep = self.model, self.dep
        h, L = m.hidden_size, m.num_layers
        w, act = dep.weight_bytes, dep.act_bytes

        flops, nbytes = embedding_lookup(self.tokens, h / dep.tp, w, act)
        self._kernel("embedding", "memory", 1, flops, nbytes)
        self._tp_all_reduce("embedding.all_reduce", 1)

        self._attention_block(L)
        for kind, count in self._count(m.mlp_kinds()).items():
            self._mlp_block(kind, count)

        if dep.pp > 1:
            message = self.tokens * h * act
            self._collective("pipeline.send_recv", "p2p", dep.pp - 1, message, dep.pp, dep.gpu.intra_node_link)

        self._elementwise("final_norm", 1, h, 1, 1, NORM_FLOPS_PER_ELEMENT)
        logits_tokens = self.shape.batch  # only the last position of each sequence is sampled
        head = Linear("lm_head", h, m.vocab_size, "lm_head")
        self._gemm_group("lm_head", [head], 1, tokens=logits_tokens)
        return self.ops

    @staticmethod
    def _count(kinds) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in kinds:
            out[k] = out.get(k, 0) + 1
        return out

    def _attention_block(self, L: int):
        m, dep, shape = self.model, self.dep, self.shape
        h = m.hidden_size
        self._elementwise("attn_norm", L, h, 1, 1, NORM_FLOPS_PER_ELEMENT)
        linears = m.attention_linears()
        for name, group in _fused([lin for lin in linears if lin.tp != "row"]):
            self._gemm_group(name, group, L)
        rope_dim = m.mla.qk_rope_head_dim if m.mla else m.head_dim
        rope_heads = dep.q_heads_local + (1 if m.mla else dep.kv_heads_local)
        self._elementwise("rotary", L, rope_heads * rope_dim, 1, 1, ROTARY_FLOPS_PER_ELEMENT)
        kv_elems = dep.kv_elems_per_token_layer_local
        self._kernel("kv_cache_write", "memory", L, 0.0 * self.tokens,
                     self.tokens * kv_elems * (dep.act_bytes + dep.kv_bytes))

        if m.mla:  # scores over nope+rope dims, values of v_head_dim (DeepSeek-V2, arXiv 2405.04434)
            qk_dim = m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim
            v_dim = m.mla.v_head_dim
            if shape.phase == "decode":  # weight absorption: attend in the latent space
                qk_dim, v_dim = m.mla.kv_lora_rank + m.mla.qk_rope_head_dim, m.mla.kv_lora_rank
        else:
            qk_dim = v_dim = m.head_dim
        for kind, count in self._count(m.attention_kinds()).items():
            window = m.sliding_window if kind == "sliding" else None
            pairs = attn.attended_pairs(shape.new_tokens, shape.past_tokens, window)
            flops = attn.attention_flops(pairs, dep.q_heads_local, qk_dim, v_dim) * shape.batch
            cached = shape.total_tokens if window is None else np.minimum(shape.total_tokens, window)
            args = (dep.q_heads_local, qk_dim, v_dim, kv_elems, dep.act_bytes, dep.kv_bytes)
            if shape.phase == "prefill":
                nbytes = attn.prefill_attention_bytes(shape.batch, shape.new_tokens, cached, *args)
                self._kernel(f"attention.{kind}", "attention_prefill", count, flops, nbytes)
            else:
                nbytes = attn.decode_attention_bytes(shape.batch, cached, *args)
                self._kernel(f"attention.{kind}", "attention_decode", count, flops, nbytes)

        for lin in linears:
            if lin.tp == "row":
                self._gemm_group(lin.name, [lin], L)
        self._tp_all_reduce("attn.all_reduce", L)
        self._elementwise("attn_residual", L, h, 2, 1, ADD_FLOPS_PER_ELEMENT)

    def _ffn(self, prefix: str, linears: list[Linear], count: int, tokens=None, weight_copies=None):
        """gate/up GEMM, activation, down GEMM. ``weight_copies`` overrides how many weight sets are read
        (routed experts: the distinct experts the batch touches)."""
        dep, m = self.dep, self.model
        tokens = self.tokens if tokens is None else tokens
        for name, group in _fused(linears):
            k = dep.local_in(group[0])
            n = sum(dep.local_out(lin) for lin in group)
            copies = 1.0 if weight_copies is None else weight_copies
            nbytes = gemm_bytes(tokens, k, n, dep.act_bytes, 0.0) + copies * k * n * dep.weight_bytes
            self._kernel(name, "gemm", count, gemm_flops(tokens, k, n), nbytes)
            if group[-1].name.endswith("up_proj"):
                inter = dep.local_out(group[-1])
                reads = 2 if m.gated_mlp else 1
                self._elementwise(f"{prefix}.act", count, inter, reads, 1, GATED_ACT_FLOPS_PER_ELEMENT, tokens)

    def _mlp_block(self, kind: str, count: int):
        m = self.model
        h = m.hidden_size
        self._elementwise("mlp_norm" if kind == "dense" else "moe_norm", count, h, 1, 1, NORM_FLOPS_PER_ELEMENT)
        if kind == "dense":
            self._ffn("mlp", m.dense_mlp_linears(), count)
        else:
            moe = m.moe
            assert moe is not None
            self._gemm_group("moe.router", [m.router_linear()], count)
            routed_tokens = self.tokens * moe.top_k
            touched = expected_distinct_experts(self.tokens, moe.num_experts, moe.top_k)
            self._ffn("moe.expert", m.expert_linears(), count, tokens=routed_tokens, weight_copies=touched)
            shared = [lin for lin in m.shared_expert_linears() if lin.name != "moe.shared_gate"]
            if shared:
                self._ffn("moe.shared", shared, count)
        self._tp_all_reduce("mlp.all_reduce" if kind == "dense" else "moe.all_reduce", count)
        self._elementwise("mlp_residual" if kind == "dense" else "moe_residual", count, h, 2, 1, ADD_FLOPS_PER_ELEMENT)


def build_step(dep: Deployment, shape: StepShape) -> list[OpCost]:
    """The operators of one step, each with per-launch FLOPs/bytes and a launch count."""
    return StepBuilder(dep, shape).build()
