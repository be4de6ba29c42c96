"""Cross-entropy over the logits of every position, as PyTorch training code computes it.

Hugging Face causal-LM heads upcast the logits to fp32 (``logits.float()``) and call
``torch.nn.functional.cross_entropy``, which runs ``log_softmax`` then ``nll_loss`` and keeps the
log-softmax output for backward (PyTorch ``aten/src/ATen/native/LossNLL.cpp``, ``SoftMax.cpp``).
Per logit element, forward: the bf16 logits read and their fp32 copy written (2 + 4 bytes), log_softmax
reads it and writes its output (4 + 4); backward: nll's gradient written densely (4), log_softmax's
backward reads it and the saved output and writes its gradient (4 + 4 + 4), and the gradient is cast
back to the logits' dtype (4 + 2). Arithmetic: max, subtract, exp, sum, log in forward (5) and exp,
subtract, scale in backward (3) per element. Only the log-softmax output is saved for backward; the
bf16 logits and their fp32 copy are transient, so the loss holds 2 + 4 + 4 bytes per logit at the end
of forward and the saved output, its gradient and the cast gradient (4 + 4 + 2) at the start of backward.
"""

from __future__ import annotations

import numpy as np

FP32_BYTES = 4.0
FORWARD_FLOPS_PER_LOGIT = 5.0
BACKWARD_FLOPS_PER_LOGIT = 3.0


def cross_entropy_forward(tokens, vocab, logit_bytes):
    """(flops, bytes) of upcast + log_softmax + nll over tokens x vocab logits."""
    elems = np.asarray(tokens, dtype=float) * vocab
    return elems * FORWARD_FLOPS_PER_LOGIT, elems * (logit_bytes + 3.0 * FP32_BYTES)


def cross_entropy_backward(tokens, vocab, logit_bytes):
    """(flops, bytes) of the log-softmax gradient and its cast back to the logits' dtype."""
    elems = np.asarray(tokens, dtype=float) * vocab
    return elems * BACKWARD_FLOPS_PER_LOGIT, elems * (5.0 * FP32_BYTES + logit_bytes)


def loss_buffer_bytes(tokens, vocab, logit_bytes):
    """Peak bytes the loss holds: the logits, their fp32 copy and the log-softmax output (the same
    amount as the saved output, its gradient and the cast gradient at the start of backward)."""
    return np.asarray(tokens, dtype=float) * vocab * (logit_bytes + 2.0 * FP32_BYTES)
