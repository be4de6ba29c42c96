"""Cross-entropy over the logits of every position, as PyTorch training code computes it.

Hugging Face causal-LM heads upcast the logits to fp32 (``logits.float()``) and call
``torch.nn.functional.cross_entropy``, which runs ``log_softmax`` then ``nll_loss`` and keeps the
log-softmax output for backward (PyTorch ``aten/src/ATen/native/LossNLL.cpp``, ``SoftMax.cpp``).
Per logit element, forward: the bf16 logits read and their fp32 copy written (2 + 4 bytes), log_softmax
reads it and writes its output (4 + 4); backward: the log-softmax output read and its gradient written
(4 + 4), the gradient cast back to the logits' dtype (4 + 2). Arithmetic: max, subtract, exp, sum, log
in forward (5) and exp, subtract, scale in backward (3) per element.
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
    return elems * BACKWARD_FLOPS_PER_LOGIT, elems * (3.0 * FP32_BYTES + logit_bytes)


def loss_buffer_bytes(tokens, vocab, logit_bytes):
    """Peak bytes the loss holds: the logits, their fp32 copy, the saved log-softmax output and its
    gradient at the start of backward."""
    return np.asarray(tokens, dtype=float) * vocab * (logit_bytes + 3.0 * FP32_BYTES)
