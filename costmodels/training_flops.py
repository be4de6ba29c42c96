"""Closed-form FLOP counts of training, and the time-to-train estimate they give.

* Megatron per-iteration FLOPs (Narayanan et al. 2021, arXiv 2104.04473, §5.1 and Appendix): for GPT
  with an ffn of 4h, a forward pass of one layer is 24·B·s·h² + 4·B·s²·h (attention over the full s²)
  and the logit layer 2·B·s·h·V. Backward is twice the forward; full recomputation adds one more
  forward of the layers (not of the logit layer):
  ``F = 96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h))`` with full recompute, ``72·B·s·L·h²·(1 + s/(6h) + V/(12·L·h))``
  without.
* Time to train (same paper, §5.1, eq. 4): ``t ≈ 8·T·P / (n·X)`` with full recompute (``6·T·P/(n·X)``
  without), for T tokens, P parameters, n GPUs each sustaining X FLOP/s.
* PaLM's model FLOPs per token (Chowdhery et al. 2022, arXiv 2204.02311, Appendix B):
  ``6·N + 12·L·H·Q·T`` (H heads, Q head dim, T sequence length); MFU divides the achieved rate of these
  by the peak, HFU counts recomputation as well (Korthikanti et al. 2022, arXiv 2205.05198, §6).
"""

from __future__ import annotations

import numpy as np

SECONDS_PER_DAY = 86400.0


def megatron_iteration_flops(batch, seq, layers, hidden, vocab, recompute: bool = True):
    """Megatron's FLOPs per iteration of a GPT model (ffn = 4h), with or without full recompute."""
    B, s, L, h, V = (np.asarray(x, dtype=float) for x in (batch, seq, layers, hidden, vocab))
    if recompute:
        return 96.0 * B * s * L * h**2 * (1.0 + s / (6.0 * h) + V / (16.0 * L * h))
    return 72.0 * B * s * L * h**2 * (1.0 + s / (6.0 * h) + V / (12.0 * L * h))


def megatron_training_time_s(tokens, params, num_gpus, flops_per_gpu_s, recompute: bool = True):
    """``8·T·P / (n·X)`` seconds (6 instead of 8 without recomputation)."""
    factor = 8.0 if recompute else 6.0
    return factor * np.asarray(tokens, dtype=float) * params / (np.asarray(num_gpus, dtype=float) * flops_per_gpu_s)


def palm_flops_per_token(matmul_params, layers, heads, head_dim, seq):
    """PaLM's model FLOPs per trained token: ``6·N + 12·L·H·Q·T`` (N: parameters in matmuls)."""
    return 6.0 * np.asarray(matmul_params, dtype=float) + 12.0 * layers * heads * head_dim * np.asarray(seq, dtype=float)


def attention_flops_full(tokens, seq, heads, qk_dim, v_dim):
    """Forward FLOPs of the two attention matmuls counted over the full s² (Megatron's and PaLM's
    convention; a causal kernel executes about half): 2·(qk_dim + v_dim)·s per token per head."""
    return np.asarray(tokens, dtype=float) * np.asarray(seq, dtype=float) * heads * 2.0 * (qk_dim + v_dim)
