"""FLOPs and bytes of memory-bound kernels: norms, rotary embedding, activations, residual adds,
embedding lookup and KV-cache writes. Each reads its inputs once and writes its output once; FLOP
counts per element are the operation's arithmetic (small, so these kernels are bandwidth-bound)."""

from __future__ import annotations

from costmodels.numeric import num

# FLOPs per element: RMSNorm squares, sums, scales and multiplies by the weight (~4); rotary is a
# complex multiply on pairs (6 per pair = 3 per element); SiLU-gating ~5 (exp, add, div, mul, mul).
NORM_FLOPS_PER_ELEMENT = 4.0
ROTARY_FLOPS_PER_ELEMENT = 3.0
GATED_ACT_FLOPS_PER_ELEMENT = 5.0
ADD_FLOPS_PER_ELEMENT = 1.0


def elementwise(tokens, width, reads: float, writes: float, flops_per_element: float, elem_bytes):
    """(flops, bytes) of a kernel that reads ``reads`` and writes ``writes`` tensors of tokens×width."""
    elems = (tokens if type(tokens) is float else num(tokens)) * width
    return elems * flops_per_element, elems * (reads + writes) * elem_bytes


def embedding_lookup(tokens, hidden, weight_bytes, act_bytes):
    """(flops, bytes): gather one row of the table per token and write it out."""
    t = num(tokens)
    return 0.0 * t, t * hidden * (weight_bytes + act_bytes)
