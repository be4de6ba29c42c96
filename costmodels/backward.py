"""FLOPs and HBM bytes of the backward pass of the operators a forward step is made of.

* **GEMM** ``Y[m,n] = X[m,k] @ W[k,n]`` has two backward GEMMs (Narayanan et al. 2021, arXiv 2104.04473,
  §5.1: backward = 2x forward): *dgrad* ``dX = dY @ Wᵀ`` (2mkn FLOPs; reads dY and W, writes dX) and
  *wgrad* ``dW = Xᵀ @ dY`` (2mkn FLOPs; reads X and dY, writes dW in the gradient dtype, read back
  too when it accumulates into an existing buffer: gradient accumulation, Megatron's fp32 main grad).
  A frozen weight (LoRA's base) has a dgrad and no wgrad.
* **FlashAttention backward** recomputes the scores on chip and does 2.5x the forward FLOPs (Dao 2023,
  FlashAttention-2, arXiv 2307.08691, the repository's ``benchmarks/benchmark_flash_attention.py``:
  ``bwd = 2.5 x fwd``). It reads Q, K, V, O, dO and the row log-sum-exp and writes dQ, dK, dV: twice
  the forward's compulsory traffic (which is Q, K, V read and O written).
* **Element-wise** kernels: the backward of a kernel that reads ``r`` tensors and writes ``w`` reads the
  ``w`` output gradients and the ``r`` saved inputs and writes ``r`` input gradients (``w + 2r`` tensors
  against the forward's ``r + w``). Per operator role (:data:`ELEMENTWISE_BACKWARD`).
"""

from __future__ import annotations

import numpy as np

FLASH_BACKWARD_FLOP_RATIO = 2.5
FLASH_BACKWARD_BYTE_RATIO = 2.0

# role -> (tensors read in forward, tensors written in forward, tensors moved in backward). The backward
# traffic is w + 2r, except: a residual add's gradient passes through to both inputs (one add of the two
# incoming gradients of the residual stream: 2 reads, 1 write); rotary's backward is the inverse rotation
# (1 read, 1 write); sort has no gradient; the embedding's backward scatter-adds each token's gradient row
# into the table gradient (read the row, read and write the table row: 3).
ELEMENTWISE_BACKWARD = {
    "norm": (1, 1, 3),
    "act": (2, 1, 5),
    "act_ungated": (1, 1, 3),
    "residual": (2, 1, 3),
    "rotary": (1, 1, 2),
    "route": (1, 1, 3),
    "sort": (1, 1, 0),
    "permute": (1, 1, 2),
    "unpermute": (1, 1, 3),
    "embedding": (1, 1, 3),
    "softmax": (1, 1, 4),  # softmax and dropout backward: read the output gradient, the output and the mask, write
}


def dgrad(rows, k, n, act_bytes, weight_read_bytes):
    """(flops, bytes) of dX[rows,k] = dY[rows,n] @ Wᵀ: dY and the weights (``weight_read_bytes`` in all:
    the distinct experts' for a grouped GEMM) read, dX written."""
    m = np.asarray(rows, dtype=float)
    return 2.0 * m * k * n, m * n * act_bytes + weight_read_bytes + m * k * act_bytes


def wgrad(rows, k, n, act_bytes, grad_elems, grad_bytes, accumulate=False):
    """(flops, bytes) of dW = Xᵀ @ dY over ``grad_elems`` weight elements: X and dY read, dW written
    (and read, when it accumulates into an existing gradient)."""
    m = np.asarray(rows, dtype=float)
    writes = np.asarray(grad_elems, dtype=float) * grad_bytes * np.where(accumulate, 2.0, 1.0)
    return 2.0 * m * k * n, m * k * act_bytes + m * n * act_bytes + writes


def flash_attention_backward(forward_flops, forward_bytes):
    """(flops, bytes) of the FlashAttention backward of a forward launch."""
    return (np.asarray(forward_flops, dtype=float) * FLASH_BACKWARD_FLOP_RATIO,
            np.asarray(forward_bytes, dtype=float) * FLASH_BACKWARD_BYTE_RATIO)


def elementwise_backward(role: str, forward_flops, forward_bytes):
    """(flops, bytes) of the backward of an element-wise forward kernel of ``role``: the forward's bytes
    scaled by (backward tensors) / (forward tensors); about twice the FLOPs where there is a gradient."""
    reads, writes, moved = ELEMENTWISE_BACKWARD[role]
    scale = moved / (reads + writes)
    return np.asarray(forward_flops, dtype=float) * (2.0 if moved else 0.0), np.asarray(forward_bytes, dtype=float) * scale
