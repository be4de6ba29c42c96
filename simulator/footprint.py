"""Device-memory footprint of a deployment, per GPU: weights, KV cache, activations, workspace.

Weights and KV split over tensor- and pipeline-parallel ranks as Megatron-LM shards them (Shoeybi
et al. 2019, arXiv 1909.08053); KV per token is 2·n_kv·d_h elements per layer (an MLA latent is
kv_lora_rank + rope dim, replicated over TP); sliding-window layers keep at most the window (Fu 2024,
arXiv 2405.08944, §3.2 for the KV-bounded concurrency that follows).
"""

from __future__ import annotations

import numpy as np

from costmodels.memory import LOGIT_BYTES
from simulator.deployment import Deployment


def weight_bytes_per_gpu(dep: Deployment):
    """Every parameter once, sharded by tp (except replicated matrices) and by pp."""
    m = dep.model
    attn = sum(dep.local_params(lin) for lin in m.attention_linears())
    layers = 0.0
    for kind, count in m.layer_groups():
        params = attn
        if kind.mlp == "dense":
            params = params + sum(dep.local_params(lin) for lin in m.dense_mlp_linears())
        else:
            assert m.moe is not None
            params = params + m.moe.num_experts * sum(dep.local_params(lin) for lin in m.expert_linears())
            params = params + sum(dep.local_params(lin) for lin in m.shared_expert_linears())
            params = params + dep.local_params(m.router_linear())
        layers = layers + count * params
    embeddings = m.vocab_size * m.hidden_size * (1 if m.tie_word_embeddings else 2) / dep.tp
    matrices = (layers + embeddings) * dep.weight_bytes
    norms = (m.num_layers * m.norm_params_per_layer() + m.hidden_size) * dep.act_bytes
    return (matrices + norms) / dep.pp


def kv_bytes_per_request(dep: Deployment, tokens):
    """KV cache of one sequence of ``tokens`` tokens on one GPU."""
    m = dep.model
    t = np.asarray(tokens, dtype=float)
    per_layer = dep.kv_elems_per_token_layer_local * dep.kv_bytes
    total = 0.0
    for kind in set(m.attention_kinds()):
        layers = m.attention_kinds().count(kind)
        cached = np.minimum(t, m.sliding_window) if kind == "sliding" else t
        total = total + layers * cached * per_layer
    return total / dep.pp


def activation_bytes_per_sequence(dep: Deployment, new_tokens):
    """Peak transient activations of one sequence in a step: the residual stream and its normed copy
    plus the widest intermediate of a layer (q/k/v/o, or gate/up/act of the MLP or the routed experts),
    and the fp32 logits of its last position. Layers run one after another, so only one layer's
    intermediates are live (inference keeps no activations for a backward pass)."""
    m = dep.model
    attn_width = m.q_dim / dep.tp + dep.kv_elems_per_token_layer_local + m.attn_out_dim / dep.tp
    mlp_width = 3.0 * m.intermediate_size / dep.tp
    if m.moe:
        mlp_width = np.maximum(mlp_width, 3.0 * m.moe.top_k * m.moe.expert_intermediate_size / dep.tp)
    per_token = (2.0 * m.hidden_size + np.maximum(attn_width, mlp_width)) * dep.act_bytes
    logits = m.vocab_size / dep.tp * LOGIT_BYTES
    return np.asarray(new_tokens, dtype=float) * per_token + logits
