"""Per-GPU training memory: model states, activations saved for backward, loss buffers, buckets.

**Parameters on one GPU** come from the model's weight matrices (``ModelSpec.attention_linears`` and
friends, the same source as the step's GEMMs): column/row-split matrices divide by tp, routed experts
by ep, every layer's share by pp. ZeRO then shards optimizer states (stage >= 1), gradients (>= 2)
and parameters (3) over the data-parallel ranks (Rajbhandari et al. 2019, arXiv 1910.02054, §5; HSDP
shards within a node only, Zhao et al. 2023, "PyTorch FSDP", arXiv 2304.11277, §3.2.2).

**Activations** generalise Korthikanti et al. 2022 (arXiv 2205.05198, §4.1) from GPT's 34·s·b·h to any
block: per token and layer, with 16-bit activations of ``a`` bytes, the inputs of the norms, of the QKV
and of the MLP's first GEMM (a·h each, replicated over tp unless sequence parallel), Q, K and V
(kept for attention's backward), the attention output (the o-projection's input), the MLP's first GEMM
outputs and its activation's output (split over tp), one-byte dropout masks after attention and MLP
when the model trains with dropout, and the s x s softmax scores (2·heads·s bytes per token, 5·heads·s
with attention dropout) unless FlashAttention or selective recompute removes them; FlashAttention keeps
the fp32 log-sum-exp per query and head instead. Full recompute keeps the layer input only. For GPT-3
this is exactly Korthikanti's ``34 + 5as/h`` (tested).

Pipeline stages hold the activations of their in-flight micro-batches (``costmodels.pipeline``). While a
layer runs backward its activation gradients (and, under full recompute, its recomputed activations)
are live: one layer's worth each (the backward working set).

**Autocast copies** (``amp``): each GEMM's bf16 weight copy, saved for its backward, except under full
recompute, where only the LM head's and one recomputed layer's are alive (:func:`autocast_copy_elems`).

**Peak.** Gradients allocated during backward replace activations freed in it: without a persistent
gradient buffer (one micro-batch, no data parallelism: ``zero_grad(set_to_none=True)``) the peak is the
larger of "activations + loss buffers + the head's gradient" (start of backward) and "all gradients" (its
end); with gradient accumulation or a data-parallel gradient buffer both are live at once.
"""

from __future__ import annotations

import numpy as np

from costmodels.loss import loss_buffer_bytes
from costmodels.optimizer import STATES_PER_PARAM
from costmodels.pipeline import inflight_microbatches

DROPOUT_MASK_BYTES = 1.0  # torch keeps dropout masks as bool
LSE_BYTES = 4.0  # FlashAttention's fp32 log-sum-exp per query per head


def local_param_counts(model, tp, pp, ep):
    """(parameters of one GPU, of which in matrices of the layers, of the vocabulary layers) before ZeRO."""
    t = np.asarray(tp, dtype=float)
    m = model

    def split(linears):  # (replicated, tp-split) parameters
        rep = sum(lin.params for lin in linears if lin.tp == "replicated")
        return rep, sum(lin.params for lin in linears) - rep

    kinds = m.mlp_kinds()
    n_moe = sum(1 for k in kinds if k == "moe")
    rep, cut = split(m.attention_linears())
    rep, cut = rep * m.num_layers, cut * m.num_layers
    r, c = split(m.dense_mlp_linears())
    rep, cut = rep + r * (m.num_layers - n_moe), cut + c * (m.num_layers - n_moe)
    layers = rep + cut / t
    if n_moe:
        r, c = split(m.expert_linears())
        layers = layers + n_moe * m.moe.num_experts / np.asarray(ep, dtype=float) * (r + c / t)
        r, c = split(m.shared_expert_linears() + [m.router_linear()])
        layers = layers + n_moe * (r + c / t)
    vocab = m.vocab_size * m.hidden_size * (1 if m.tie_word_embeddings else 2) / t
    norms = m.num_layers * m.norm_params_per_layer() + m.hidden_size
    p = np.asarray(pp, dtype=float)
    return (layers + vocab + norms) / p, layers / p, vocab / p


def lora_params(model, rank, targets, tp, pp):
    """Adapter parameters of one GPU: r·(in + out) per adapted matrix per layer (B split with the matrix)."""
    t = np.asarray(tp, dtype=float)
    per_layer = 0.0
    for lin in model.attention_linears() + model.dense_mlp_linears():
        if any(lin.name.endswith(x) for x in targets):
            per_layer = per_layer + rank * (lin.in_features + lin.out_features / t)
    return per_layer * model.num_layers / np.asarray(pp, dtype=float)


def optimizer_state_elems_per_param(model, optimizer: str) -> float:
    """States per parameter: 2 (AdamW), 1 (SGD momentum), or Adafactor's factored rows + columns."""
    if optimizer != "adafactor":
        return STATES_PER_PARAM[optimizer]
    mats = model.attention_linears() + model.dense_mlp_linears()
    params = sum(lin.params for lin in mats)
    return sum(lin.in_features + lin.out_features for lin in mats) / params


def activation_bytes_per_token_layer(model, tp, sp, recompute, flash, dropout, seq_len, act_bytes=2.0):
    """Saved bytes per token per layer on one GPU (see the module docstring); ``recompute`` a code
    (0 none, 1 selective, 2 full) or array of codes."""
    m = model
    t = np.asarray(tp, dtype=float)
    h = m.hidden_size
    shard = np.where(sp, t, 1.0)
    drop = 2.0 * DROPOUT_MASK_BYTES * h if dropout else 0.0
    unsplit = (act_bytes * h * (m.norms_per_layer + 2) + drop) / shard
    kv_local = np.ceil(m.num_kv_heads / t) * m.head_dim * 2.0
    attn = act_bytes * (m.q_dim / t + kv_local + m.attn_out_dim / t)
    if m.moe is not None and any(k == "moe" for k in m.mlp_kinds()):
        inter = m.moe.top_k * m.moe.expert_intermediate_size + m.moe.num_shared_experts * m.moe.shared_intermediate
        permuted = act_bytes * m.moe.top_k * h
    else:
        inter, permuted = m.intermediate_size, 0.0
    mlp = act_bytes * inter * ((2.0 if m.gated_mlp else 1.0) + 1.0) / t + permuted
    heads = m.num_attention_heads / t
    rc = np.asarray(recompute)
    scores = heads * np.asarray(seq_len, dtype=float) * (act_bytes + (3.0 if dropout else 0.0))
    scores = np.where(flash, heads * LSE_BYTES, np.where(rc >= 1, 0.0, scores))
    full = unsplit + attn + mlp + scores
    return np.where(rc == 2, act_bytes * h / shard, full), full


def autocast_copy_elems(s, layer_p, vocab_p):
    """Elements of autocast's bf16 weight copies alive at the peak (``amp``). Autocast casts each GEMM's
    weight at its use and the GEMM saves the copy for its backward (dgrad), so every matrix's copy lives
    from forward to backward; the input embedding is a gather and casts no table. Under full recompute a
    checkpointed block saves nothing in forward: its copies are made again when it is recomputed in
    backward, one layer's at a time, and only the LM head's copy (outside the checkpoints) stays."""
    head = vocab_p * (1.0 if s.model.tie_word_embeddings else 0.5)
    per_layer = layer_p / (s.model.num_layers / np.asarray(s.pp_arr, dtype=float))
    return np.where(np.asarray(s.recompute) == 2, head + per_layer, layer_p + head)


def training_memory(s, counts, prec, state_elems):
    """Per-GPU memory terms (bytes) of a resolved training setup ``s`` (see ``simulator.training.engine``)."""
    total_p, layer_p, vocab_p = counts
    trainable = s.lora_p if s.lora_p is not None else total_p
    dp_shard = s.shard_ranks
    zero = np.asarray(s.zero)
    weights = (total_p * (prec.param_bytes + prec.extra_weight_bytes)) / np.where(zero >= 3, dp_shard, 1.0)
    if prec.cast_weights:
        weights = weights + autocast_copy_elems(s, layer_p, vocab_p) * 2.0
    grads = trainable * prec.grad_bytes / np.where(zero >= 2, dp_shard, 1.0)
    optim = trainable * (prec.master_bytes + state_elems * prec.state_bytes) / np.where(zero >= 1, dp_shard, 1.0)
    host = 0.0 * optim
    if s.offload in ("optimizer", "params", "nvme"):
        host = host + optim
        optim = 0.0 * optim
    if s.offload in ("params", "nvme"):  # parameters and gradients stream per layer; two layers resident
        per_layer = layer_p / max(s.model.num_layers, 1) * s.pp_arr
        host = host + weights + grads
        weights = 2.0 * per_layer * prec.param_bytes + 0.0 * weights
        grads = per_layer * prec.grad_bytes + 0.0 * grads

    tokens = np.asarray(s.micro_batch, dtype=float) * s.seq_len / s.cp
    saved, full = activation_bytes_per_token_layer(s.model, s.tp, s.sp, s.recompute, s.flash, s.dropout, s.seq_len)
    layers_per_stage = s.model.num_layers / s.pp_arr
    inflight = inflight_microbatches(s.schedule, s.pp_arr, s.microbatches, s.virtual_stages)
    working = tokens * full * (1.0 + (np.asarray(s.recompute) == 2))
    act_first = tokens * saved * layers_per_stage * inflight + working
    act_last = tokens * saved * layers_per_stage + working
    vocab_local = s.model.vocab_size / np.asarray(s.tp, dtype=float)
    loss = loss_buffer_bytes(tokens, vocab_local, 2.0) + tokens * s.model.hidden_size * 2.0 * 2.0  # + final norm in/out
    if s.vocab_parallel:
        loss = loss / s.pp_arr
    head_grad = s.model.vocab_size * s.model.hidden_size / np.asarray(s.tp, dtype=float) * prec.grad_bytes
    head_grad = head_grad * (s.lora_p is None)
    if prec.cast_weights:
        head_grad = head_grad * 1.5  # the bf16 gradient and its fp32 cast
    buckets = np.where(zero >= 3, 2.0 * layer_p / max(s.model.num_layers, 1) * s.pp_arr * prec.param_bytes, 0.0)
    workspace = s.profile.workspace_bytes  # outside the allocator: counts against capacity, not in total_bytes
    fixed = weights + optim + buckets
    persistent = s.persistent_grads
    first = fixed + np.where(persistent, grads + act_first, np.maximum(act_first, grads))
    last = fixed + np.where(persistent, grads + act_last + loss, np.maximum(act_last + loss + head_grad, grads))
    last_peaks = (last >= first) | (s.pp_arr == 1)
    single = s.pp_arr == 1
    act = np.where(single, act_first, np.where(last_peaks, act_last, act_first))
    loss_rep = np.where(single | last_peaks, loss, 0.0)
    total = np.where(single, fixed + np.where(persistent, grads + act_first + loss,
                                              np.maximum(act_first + loss + head_grad, grads)),
                     np.maximum(first, last))
    capacity = s.gpu.hbm_capacity_bytes * s.memory_utilization
    return {
        "weights_bytes": weights, "gradient_bytes": grads, "optimizer_bytes": optim, "activation_bytes": act,
        "loss_bytes": loss_rep, "bucket_bytes": buckets, "workspace_bytes": workspace + 0.0 * total,
        "total_bytes": total, "capacity_bytes": capacity + 0.0 * total, "fits": total + workspace <= capacity,
        "host_bytes": host,
    }
