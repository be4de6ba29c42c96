"""FLOPs and HBM bytes of the attention core (scores, softmax, weighted sum), not its projections.

Prefill follows FlashAttention (Dao et al. 2022, arXiv 2205.14135; FA-2, arXiv 2307.08691): the
s×s score matrix stays on chip, so HBM traffic is Q, K, V read once and O written once; K/V tiles
re-read by later query tiles hit L2 at these sizes. FLOPs count the two matmuls, 4·d per
(query, key) pair per head (the FA-2 benchmark convention), over the pairs the mask keeps.

Decode reads every cached K/V element once per step (Fu 2024, arXiv 2405.08944, §3: decoding is
bound by moving the KV cache from HBM to SM) and does 4·d FLOPs per cached token per head.
"""

from __future__ import annotations

import numpy as np

from costmodels.numeric import num


def attended_pairs(new_tokens, past_tokens, window=None) -> np.ndarray:
    """(query, key) pairs kept by a causal mask for ``new_tokens`` queries after ``past_tokens``.

    Query i (1-based) sees ``past + i`` keys, capped at ``window`` for sliding-window attention:
    Σ_i min(past + i, window). Closed form, exact for integer inputs.
    """
    s = num(new_tokens)
    p = num(past_tokens)
    full = s * p + s * (s + 1.0) / 2.0
    if window is None:
        return full
    w = float(window)
    # queries with past + i <= w see past + i keys; the rest see w.
    n_free = np.clip(w - p, 0.0, s)  # count of i in [1, s] with p + i <= w
    free = n_free * p + n_free * (n_free + 1.0) / 2.0
    return free + (s - n_free) * w


def attention_flops(pairs, num_q_heads, qk_dim, v_dim=None) -> np.ndarray:
    """2·qk_dim FLOPs for a score plus 2·v_dim for its weighted value, per pair per query head."""
    v_dim = qk_dim if v_dim is None else v_dim
    return num(pairs) * num_q_heads * 2.0 * (qk_dim + v_dim)


def prefill_attention_bytes(batch, new_tokens, cached_tokens, num_q_heads, q_dim, o_dim, kv_elems_per_token, act_bytes,
                            kv_bytes) -> np.ndarray:
    """Q read and O written for the new tokens, K/V of every token the queries attend read once."""
    b = num(batch)
    s = num(new_tokens)
    q_o = b * s * num_q_heads * (q_dim + o_dim) * act_bytes
    return q_o + b * num(cached_tokens) * kv_elems_per_token * kv_bytes


def decode_kv_read_bytes(readers, cached_tokens, kv_elems_per_token, kv_bytes):
    """KV-cache bytes a decode attention launch reads: every kept token of each reading sequence once."""
    return num(readers) * (num(cached_tokens) * (kv_elems_per_token * kv_bytes))


def decode_attention_bytes(batch, cached_tokens, num_q_heads, q_dim, o_dim, kv_elems_per_token, act_bytes,
                           kv_bytes, new_tokens=1.0, kv_readers=None, kv_read_bytes=None) -> np.ndarray:
    """``new_tokens`` query tokens per sequence (1, or a verify pass's draft + 1): the KV cache read once
    per step by ``kv_readers`` sequences (default every one; fewer when a shared prefix is read once for
    the batch, Hydragen, arXiv 2402.05099), plus q read and o written for each query token.
    ``kv_read_bytes``: the first term (``decode_kv_read_bytes`` of the same arguments), where the caller
    has it already."""
    b = num(batch)
    readers = b if kv_readers is None else kv_readers
    q_o = b * num(new_tokens) * num_q_heads * (q_dim + o_dim) * act_bytes
    if kv_read_bytes is None:
        kv_read_bytes = decode_kv_read_bytes(readers, cached_tokens, kv_elems_per_token, kv_bytes)
    return kv_read_bytes + q_o
