"""The operators of one training micro-batch on one GPU: forward, backward, recomputation and loss.

The forward is the inference step builder's (``simulator.step.StepBuilder``) over a micro-batch of
``micro_batch`` sequences of ``seq_len / cp`` tokens each with logits at every position; training drops
only the KV-cache write. Every forward operator then gets its backward (``costmodels.backward``):

* a GEMM gets a dgrad GEMM and, when its weight is trained, a wgrad GEMM (kinds ``gemm_dgrad`` and
  ``gemm_wgrad``; grouped expert GEMMs keep ``grouped_gemm``);
* attention gets a FlashAttention backward (kind ``attention_backward``, 2.5x the forward FLOPs);
* element-wise kernels their backward traffic by role; the tensor-parallel all-reduce after each
  attention and MLP block its conjugate all-reduce before the block (Shoeybi et al. 2019, arXiv
  1909.08053, §3: the f and g operators); sequence parallelism turns each into a reduce-scatter and an
  all-gather of the same bytes and shards norms and residual adds over the tp ranks (Korthikanti et
  al. 2022, arXiv 2205.05198, §4.2.2).

Recomputation re-runs forward operators during backward: ``full`` every per-layer operator (as
``torch.utils.checkpoint`` around each block), ``selective`` the attention core only (Korthikanti et al.
2022, §5). The recompute setting may be an array of codes (0 none, 1 selective, 2 full): operator counts
carry it, so one operator list prices every setting at once.

Each operator is tagged with the part of the model it belongs to (``layers``, ``embedding`` on the first
pipeline stage, ``head`` on the last) and its phase (``forward``, ``backward``, ``recompute``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from costmodels import backward as bwd
from costmodels.gemm import gemm_bytes, gemm_flops
from costmodels.loss import cross_entropy_backward, cross_entropy_forward
from costmodels.roofline import OpCost
from simulator.step import StepBuilder, StepShape

HEAD_OPS = ("final_norm", "lm_head")
EMBEDDING_OPS = ("embedding", "embedding.all_reduce")


@dataclass
class TrainOp:
    op: OpCost
    part: str  # layers | embedding | head
    phase: str  # forward | backward | recompute
    group: str = "compute"  # compute | tp | cp | ep | pp (which link a collective uses)


def _role(name: str, gated: bool) -> str:
    if name.endswith(".softmax"):
        return "softmax"
    if name.endswith("extra_launches"):  # a stack's launch-only operators (simulator.stacks): no gradient bytes
        return "sort"
    if ".output_copy." in name or ".repeat_kv." in name or (name.startswith("moe.") and not name.startswith(
            ("moe.route", "moe.sort", "moe.permute", "moe.unpermute", "moe.expert."))):
        return "permute"  # a stack's copies and MoE passes: the gradient makes the same pass back
    leaf = name.rsplit(".", 1)[-1]
    for role in ("route", "sort", "unpermute", "permute"):
        if name.endswith("moe." + role):
            return role
    if name.endswith("norm"):
        return "norm"
    if leaf == "act":
        return "act" if gated else "act_ungated"
    if "residual" in name:
        return "residual"
    if name.endswith("rotary"):
        return "rotary"
    if name == "embedding":
        return "embedding"
    raise ValueError(f"no backward role for {name!r}")


def _part(op) -> str:
    if op.name in EMBEDDING_OPS:
        return "embedding"
    if op.name in HEAD_OPS:
        return "head"
    return "layers"


def forward_ops(dep, micro_batch, seq_len, cp, sp):
    """The inference forward over a micro-batch with logits at every position, without the KV write.
    Under context parallelism each GPU holds seq/cp tokens of each sequence and computes 1/cp of the
    causal (query, key) pairs (load-balanced ring attention): its queries sit, on average, after
    (seq - seq/cp)/2 earlier keys."""
    local = np.asarray(seq_len, dtype=float) / cp
    shape = StepShape(micro_batch, local, (np.asarray(seq_len, dtype=float) - local) / 2.0, "prefill",
                      logits_per_seq=local)
    ops = [op for op in StepBuilder(dep, shape).build() if not op.name.endswith("kv_cache_write")]
    if np.any(sp):  # sequence parallel: norms and residual adds run on tokens / tp
        shard = np.where(sp, 1.0 / np.asarray(dep.tp, dtype=float), 1.0)
        ops = [replace(op, flops=op.flops * shard, hbm_bytes=op.hbm_bytes * shard)
               if op.kind == "memory" and (op.name.endswith("norm") or "residual" in op.name) else op for op in ops]
    return ops, shape


def backward_op(op, act_bytes, grad_bytes, accumulate, frozen: bool, gated: bool, bf16_peak):
    """The backward operators of one forward operator (a list: a GEMM has two). ``frozen``: no weight
    gradients (LoRA's base, embedding included)."""
    if op.kind in ("gemm", "grouped_gemm"):
        rows = np.asarray(op.rows, dtype=float)
        k = op.input_elems / np.maximum(rows, 1e-30)
        out = (op.hbm_bytes - op.input_elems * act_bytes - op.weight_bytes) / act_bytes
        n = out / np.maximum(rows, 1e-30)
        dkind = "grouped_gemm" if op.kind == "grouped_gemm" else "gemm_dgrad"
        wkind = "grouped_gemm" if op.kind == "grouped_gemm" else "gemm_wgrad"
        f, b = bwd.dgrad(rows, k, n, act_bytes, op.weight_bytes)
        ops = [replace(op, name=op.name + ".dgrad", kind=dkind, flops=f, hbm_bytes=b)]
        if not frozen:
            f, b = bwd.wgrad(rows, k, n, act_bytes, op.weight_elems, grad_bytes, accumulate)
            ops.append(replace(op, name=op.name + ".wgrad", kind=wkind, flops=f, hbm_bytes=b))
        return ops
    if op.kind == "attention_prefill":
        f, b = bwd.flash_attention_backward(op.flops, op.hbm_bytes)
        return [replace(op, name=op.name + ".backward", kind="attention_backward", flops=f, hbm_bytes=b,
                        peak_flops_per_s=bf16_peak)]
    if op.kind == "collective":
        return [] if op.name == "embedding.all_reduce" else [replace(op, name=op.name + ".backward")]
    if op.name == "embedding" and frozen:
        return []
    f, b = bwd.elementwise_backward(_role(op.name, gated), op.flops, op.hbm_bytes)
    if not np.any(b):
        return []
    return [replace(op, name=op.name + ".backward", flops=f, hbm_bytes=b)]


def _lora_ops(dep, fwd, rank, targets, bf16_peak):
    """Each adapted projection gains x·A (k x r) then ·B (r x n) in forward, and their dgrad and wgrad
    GEMMs in backward (Hu et al. 2021, arXiv 2106.09685, §4.1): 2·rows·r·(k + n) FLOPs per pass."""
    out = []
    for op in fwd:
        if op.kind != "gemm" or not op.per_layer or not any(t in op.name for t in targets):
            continue
        rows = np.asarray(op.rows, dtype=float)
        k = op.input_elems / np.maximum(rows, 1e-30)
        n = (op.hbm_bytes - op.input_elems * dep.act_bytes - op.weight_bytes) / dep.act_bytes / np.maximum(rows, 1e-30)
        flops = gemm_flops(rows, k, rank) + gemm_flops(rows, rank, n)
        nbytes = gemm_bytes(rows, k, rank, dep.act_bytes, dep.act_bytes) + gemm_bytes(rows, rank, n, dep.act_bytes,
                                                                                    dep.act_bytes)
        lora = replace(op, name=op.name + ".lora", flops=flops, hbm_bytes=nbytes, weight_elems=rank * (k + n),
                       weight_bytes=rank * (k + n) * dep.act_bytes)
        out.append(TrainOp(lora, "layers", "forward"))
        out.append(TrainOp(replace(lora, name=lora.name + ".backward", kind="gemm_dgrad", flops=2.0 * flops,
                                   hbm_bytes=2.0 * nbytes), "layers", "backward"))
    return out


# Unfused attention (no FlashAttention): per score element the QK^T GEMM writes it (2 bytes), the fused
# masked softmax reads it and writes its output (2 + 2), dropout reads that and writes its output and a
# one-byte mask (2 + 2 + 1): 11 bytes (Megatron-LM's scaled_masked_softmax and dropout; the s x s
# tensors Korthikanti et al. 2022, §4.1, count as activations). The backward moves about twice as much.
SOFTMAX_BYTES_PER_SCORE = 11.0


def _with_unfused_softmax(fwd, micro_batch, seq_len, cp, dep):
    """Insert, after each attention core, the memory-bound pass over its s x s scores."""
    out = []
    for op in fwd:
        out.append(op)
        if op.kind == "attention_prefill":
            scores = np.asarray(micro_batch, dtype=float) * dep.q_heads_local * np.asarray(seq_len, dtype=float) ** 2 / cp
            out.append(replace(op, name=op.name + ".softmax", kind="memory", flops=5.0 * scores,
                               hbm_bytes=SOFTMAX_BYTES_PER_SCORE * scores))
    return out


def training_ops(dep, *, micro_batch, seq_len, cp, ep, sp, recompute, prec, microbatches, lora_rank=None,
                 lora_targets=(), bf16_peak, comm=None, flash=True, forward_transform=None):
    """Every operator of one micro-batch's forward, backward and recompute on one GPU, tagged. ``comm(name,
    collective, count, message_bytes, group)`` makes the context- and expert-parallel collectives' operators;
    ``forward_transform(ops, shape)`` rewrites the forward first (a stack profile's implementation,
    ``simulator.stacks.apply_stack_ops``), so its backward follows what the stack runs."""
    m = dep.model
    gated = m.gated_mlp
    lora = lora_rank is not None
    fwd, shape = forward_ops(dep, micro_batch, seq_len, cp, sp)
    if forward_transform is not None:
        fwd = forward_transform(fwd, shape)
    fwd = [replace(op, peak_flops_per_s=bf16_peak) if op.kind.startswith("attention") else op for op in fwd]
    rc = np.asarray(recompute)
    grad_bytes = 2.0 if prec.cast_weights else prec.grad_bytes  # amp: bf16 wgrad, cast to fp32 below
    accumulate = (np.asarray(microbatches) > 1) | (prec.grad_bytes > prec.param_bytes)
    ops: list[TrainOp] = []
    if not flash:
        fwd = _with_unfused_softmax(fwd, micro_batch, seq_len, cp, dep)
    for op in fwd:
        part = _part(op)
        group = "tp" if op.kind == "collective" else "compute"
        ops.append(TrainOp(op, part, "forward", group))
        for b in backward_op(op, dep.act_bytes, grad_bytes, accumulate, lora, gated, bf16_peak):
            ops.append(TrainOp(b, part, "backward", group))
        if part == "layers":
            core = op.kind == "attention_prefill" or op.name.endswith(".softmax")
            again = np.where(rc == 2, 1.0, np.where((rc == 1) & core, 1.0, 0.0))
            if np.any(again):
                ops.append(TrainOp(replace(op, name=op.name + ".recompute", count=op.count * again), part,
                                   "recompute", group))
        if prec.cast_weights and op.kind in ("gemm", "grouped_gemm"):
            # autocast: the fp32 weight read and its bf16 copy written, per forward pass (again under full
            # recompute); the bf16 weight gradient read and its fp32 cast written, plus the fp32 add when
            # accumulating into an existing .grad (AccumulateGrad)
            passes = 1.0 + np.where(rc == 2, 1.0, 0.0) * (part == "layers")
            cast = replace(op, name=op.name + ".weight_cast", kind="memory", flops=0.0 * op.weight_elems,
                           hbm_bytes=op.weight_elems * 6.0, count=op.count * passes)
            ops.append(TrainOp(cast, part, "forward"))
            if not lora:
                gcast = replace(op, name=op.name + ".grad_cast", kind="memory", flops=0.0 * op.weight_elems,
                                hbm_bytes=op.weight_elems * (6.0 + 12.0 * (np.asarray(microbatches) > 1)))
                ops.append(TrainOp(gcast, part, "backward"))
    tokens = np.asarray(micro_batch, dtype=float) * shape.new_tokens
    vocab_local = m.vocab_size / np.asarray(dep.tp, dtype=float)
    f, b = cross_entropy_forward(tokens, vocab_local, dep.act_bytes)
    ops.append(TrainOp(OpCost("cross_entropy", "cross_entropy", 1, flops=f, hbm_bytes=b,
                              peak_flops_per_s=dep.gpu.peak_for("fp32"),
                              hbm_bandwidth_bytes_per_s=dep.hbm_bandwidth_bytes_per_s), "head", "forward"))
    f, b = cross_entropy_backward(tokens, vocab_local, dep.act_bytes)
    ops.append(TrainOp(OpCost("cross_entropy.backward", "cross_entropy_backward", 1, flops=f, hbm_bytes=b,
                              peak_flops_per_s=dep.gpu.peak_for("fp32"),
                              hbm_bandwidth_bytes_per_s=dep.hbm_bandwidth_bytes_per_s), "head", "backward"))
    if lora:
        ops.extend(_lora_ops(dep, fwd, lora_rank, lora_targets, bf16_peak))
    if comm is not None:
        ops.extend(_parallel_comm(dep, tokens, cp, ep, rc, comm))
    return ops


def _parallel_comm(dep, tokens, cp, ep, rc, comm):
    """Context-parallel K/V exchange and expert-parallel all-to-alls of one micro-batch.

    Ring attention (Liu et al. 2023, arXiv 2310.01889) passes every rank's K/V around the cp ranks in
    forward (an all-gather's traffic) and their gradients back in backward (a reduce-scatter's); expert
    parallelism dispatches and combines each token's top-k rows in forward and again in backward, four
    all-to-alls per MoE layer (Lepikhin et al. 2020, GShard, arXiv 2006.16668)."""
    m = dep.model
    out: list[TrainOp] = []
    n_attn = m.num_layers
    if np.any(np.asarray(cp) > 1):
        kv = tokens * dep.kv_elems_per_token_layer_local * dep.act_bytes * cp  # the full sequence's K/V
        again = np.where(rc == 2, 1.0, 0.0)
        out.append(TrainOp(comm("cp.kv_all_gather", "all_gather", n_attn * (1.0 + again), kv, "cp"),
                           "layers", "forward", "cp"))
        out.append(TrainOp(comm("cp.kv_grad_reduce_scatter", "reduce_scatter", n_attn, kv, "cp"),
                           "layers", "backward", "cp"))
    if m.moe is not None and np.any(np.asarray(ep) > 1):
        n_moe = sum(1 for k in m.mlp_kinds() if k == "moe")
        rows = tokens * m.moe.top_k * m.hidden_size * dep.act_bytes
        out.append(TrainOp(comm("ep.all_to_all", "all_to_all", 2 * n_moe, rows, "ep"),
                           "layers", "forward", "ep"))
        out.append(TrainOp(comm("ep.all_to_all.backward", "all_to_all", 2 * n_moe, rows, "ep"),
                           "layers", "backward", "ep"))
    return out
