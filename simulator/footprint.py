"""Device-memory footprint of a deployment, per GPU: weights, KV cache, activations, workspace.

Weights and KV split over tensor- and pipeline-parallel ranks as Megatron-LM shards them (Shoeybi
et al. 2019, arXiv 1909.08053); KV per token is 2·n_kv·d_h elements per layer (an MLA latent is
kv_lora_rank + rope dim, replicated over TP); sliding-window layers keep at most the window (Fu 2024,
arXiv 2405.08944, §3.2 for the KV-bounded concurrency that follows).

Techniques enter through the deployment's hook chains: the tokens each layer keeps (eviction,
head-level retention), the share of the cache resident on the GPU (offload) or shared by all requests
(prefix caching), cross layers that store one cache between them, linear layers' recurrent states,
and extra weights and per-request caches (a draft model and its KV).
"""

from __future__ import annotations

import numpy as np

from costmodels.memory import LOGIT_BYTES, max_concurrency
from costmodels.numeric import num
from simulator.deployment import Deployment
from simulator.step import KV_PROJECTIONS


def weight_bytes_per_gpu(dep: Deployment):
    """Every parameter once, sharded by tp (except replicated matrices) and by pp (once per deployment)."""
    return dep.cached("weight_bytes_per_gpu", _weight_bytes_per_gpu, dep)


def _weight_bytes_per_gpu(dep: Deployment):
    m = dep.model
    attention = m.attention_linears()
    own = sum(dep.local_params(lin) for lin in attention)
    cross = sum(dep.local_params(lin) for lin in attention if lin.name not in KV_PROJECTIONS)
    layers = 0.0
    for att, mlp in zip(dep.layer_kinds, m.mlp_kinds()):
        params = cross if att == "cross" else own
        if mlp == "dense":
            params = params + sum(dep.local_params(lin) for lin in m.dense_mlp_linears())
        else:
            assert m.moe is not None
            params = params + m.moe.num_experts * sum(dep.local_params(lin) for lin in m.expert_linears())
            params = params + sum(dep.local_params(lin) for lin in m.shared_expert_linears())
            params = params + dep.local_params(m.router_linear())
        layers = layers + params
    embeddings = m.vocab_size * m.hidden_size * (1 if m.tie_word_embeddings else 2) / dep.tp
    matrices = layers * dep.layer_weight_bytes + embeddings * dep.emb_bytes
    norms = (m.num_layers * m.norm_params_per_layer() + m.hidden_size) * dep.act_bytes
    extra = sum(tech.extra_weight_bytes(dep) for tech in dep.techniques)
    return (matrices + norms) / dep.pp + extra


def layer_kv_bytes(dep: Deployment, tokens):
    """One sequence's cache over all layers on one GPU, before offload and prefix sharing: each KV layer
    keeps ``dep.kv_tokens`` tokens (cross layers store one cache between them), each linear layer its state."""
    t = num(tokens)
    per_layer = dep.kv_elems_per_token_layer_local * dep.kv_bytes
    total = 0.0 * t
    for kind, count in dep.cached("kind_counts", dep.kind_counts).items():
        if kind == "linear":
            total = total + count * dep.recurrent_state_bytes_per_layer_local
        else:
            stored = 1 if kind == "cross" else count
            total = total + stored * dep.kv_tokens(t, kind) * per_layer
    return total / (dep.pp * dep.cp)  # pipeline stages hold their layers, CP ranks their share of the sequence


def kv_split(dep: Deployment, tokens):
    """(bytes one sequence of ``tokens`` adds on one GPU, bytes of the shared prefix held once per GPU):
    the resident KV cache split by the prefix-shared share, plus per-request caches techniques add (a
    draft model's KV, eviction scores) on the first."""
    resident = layer_kv_bytes(dep, tokens) * dep.kv_resident_fraction()
    shared = dep.kv_shared_fraction()
    own = resident * (1.0 - shared)
    if dep.techniques:
        own = own + sum(tech.extra_request_bytes(dep, tokens) for tech in dep.techniques)
    return own, resident * shared


def kv_bytes_per_request(dep: Deployment, tokens):
    """Device memory one sequence of ``tokens`` tokens adds on one GPU (``kv_split``)."""
    return kv_split(dep, tokens)[0]


def shared_kv_bytes(dep: Deployment, tokens):
    """The shared prefix's KV, held once per GPU whatever the number of requests (``kv_split``)."""
    return kv_split(dep, tokens)[1]


def activation_bytes_per_sequence(dep: Deployment, new_tokens):
    """Peak transient activations of one sequence in a step: the residual stream and its normed copy
    plus the widest intermediate of a layer (q/k/v/o, or gate/up/act of the MLP or the routed experts),
    and the fp32 logits of its last position. Layers run one after another, so only one layer's
    intermediates are live (inference keeps no activations for a backward pass)."""
    per_token, logits = dep.cached("activation_bytes", _activation_bytes, dep)
    return num(new_tokens) * per_token + logits


def _activation_bytes(dep: Deployment):
    """(bytes per token of a layer's live activations, bytes of one position's logits): configuration only."""
    m = dep.model
    attn_width = m.q_dim / dep.tp + dep.kv_elems_per_token_layer_local + m.attn_out_dim / dep.tp
    mlp_width = 3.0 * m.intermediate_size / dep.tp
    if m.moe:
        mlp_width = np.maximum(mlp_width, 3.0 * m.moe.top_k * m.moe.expert_intermediate_size / dep.tp)
    per_token = (2.0 * m.hidden_size + np.maximum(attn_width, mlp_width)) * dep.act_bytes
    logits = m.vocab_size / dep.tp * LOGIT_BYTES
    return (float(per_token) if np.ndim(per_token) == 0 else per_token), logits


def memory_arrays(dep: Deployment, batch, cached, new_tokens, decode_new_tokens=1.0) -> dict[str, np.ndarray]:
    """Per-GPU memory of ``batch`` sequences with ``cached`` tokens each, stepping ``new_tokens`` each.

    ``max_concurrency`` is the number of sequences of ``cached`` tokens whose KV cache fits beside the
    weights, workspace and shared prefix while they decode (``decode_new_tokens`` per sequence a step:
    1, or a verify pass's draft + 1), per model replica (each replica's GPUs hold its own cache); the
    activations of a prefill of the phase do not bound it. A point stays in Python floats."""
    b = batch * 1.0 if isinstance(batch, (int, float)) else num(batch)
    weights = weight_bytes_per_gpu(dep)
    kv_req, shared = kv_split(dep, cached)
    act_seq = activation_bytes_per_sequence(dep, new_tokens)
    workspace = dep.profile.workspace_bytes
    capacity = dep.gpu.hbm_capacity_bytes * dep.memory_utilization
    has_shared = shared != 0.0 if type(shared) is float else np.any(shared)
    a = {
        "weights_bytes": weights,
        "kv_cache_bytes": b * kv_req + shared if has_shared else b * kv_req,
        "activation_bytes": b * act_seq,
        "workspace_bytes": workspace,
    }
    a["total_bytes"] = (weights + workspace + a["activation_bytes"]) + a["kv_cache_bytes"]  # small terms first
    a["capacity_bytes"] = capacity
    a["fits"] = a["total_bytes"] <= capacity
    a["kv_bytes_per_request"] = kv_req
    c = num(cached)
    a["kv_bytes_per_token"] = kv_req / (max(c, 1.0) if type(c) is float else np.maximum(c, 1.0))
    decode_act = activation_bytes_per_sequence(dep, decode_new_tokens)
    a["max_concurrency"] = max_concurrency(capacity, weights + workspace + shared, kv_req + decode_act)
    return a
