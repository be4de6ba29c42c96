"""Training memory: activations saved for backward (Korthikanti et al. 2022) and model states under
ZeRO (Rajbhandari et al. 2019).

**Activations** (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", arXiv 2205.05198, §4, eqs. 1-5), bytes per transformer layer of a GPT block with 16-bit
activations, sequence s, micro-batch b, hidden h, a heads, tensor-parallel degree t:

* no parallelism: ``s·b·h·(34 + 5·a·s/h)``;
* tensor parallel: ``s·b·h·(10 + 24/t + 5·a·s/(h·t))``;
* tensor + sequence parallel: ``s·b·h·(34 + 5·a·s/h)/t``;
* tensor + sequence parallel + selective recompute: ``34·s·b·h/t``;
* full recompute: ``2·s·b·h`` (the layer input), ``/t`` with sequence parallelism.

FlashAttention never materialises the s x s scores (Dao et al. 2022, arXiv 2205.14135), which removes
the ``5·a·s/h`` term as selective recompute does.

**Model states** (Rajbhandari et al. 2019, "ZeRO", arXiv 1910.02054, §5 and Fig. 1), bytes per GPU
for Ψ parameters, mixed-precision Adam (K = 12 bytes of fp32 master weights, momentum and variance per
parameter), N_d data-parallel ranks: stage 0 ``(2 + 2 + K)·Ψ``; stage 1 (optimizer states sharded)
``4Ψ + K·Ψ/N_d``; stage 2 (+ gradients) ``2Ψ + (2 + K)·Ψ/N_d``; stage 3 (+ parameters)
``(2 + 2 + K)·Ψ/N_d``. The general form takes the bytes of each state.
"""

from __future__ import annotations

import numpy as np


def korthikanti_activation_bytes(seq, batch, hidden, heads, tp=1, sp=False, recompute="none", flash=False):
    """Bytes per layer of a GPT layer's saved activations under Korthikanti et al.'s settings."""
    s, b, h, a, t = (np.asarray(x, dtype=float) for x in (seq, batch, hidden, heads, tp))
    sbh = s * b * h
    scores = np.where(flash or recompute == "selective", 0.0, 5.0 * a * s / h)
    if recompute == "full":
        return 2.0 * sbh / np.where(sp, t, 1.0)
    if sp:
        return sbh * (34.0 + scores) / t
    return sbh * (10.0 + 24.0 / t + scores / t)


def zero_model_state_bytes(params, dp, stage, param_bytes=2.0, grad_bytes=2.0, optimizer_bytes=12.0):
    """Per-GPU bytes of parameters + gradients + optimizer states under ZeRO ``stage`` (0-3)."""
    psi = np.asarray(params, dtype=float)
    n = np.asarray(dp, dtype=float)
    stage = np.asarray(stage)
    p = psi * param_bytes / np.where(stage >= 3, n, 1.0)
    g = psi * grad_bytes / np.where(stage >= 2, n, 1.0)
    o = psi * optimizer_bytes / np.where(stage >= 1, n, 1.0)
    return p + g + o
