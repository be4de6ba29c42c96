"""Memory footprints and the concurrency they allow (Fu 2024, arXiv 2405.08944, §3.2).

Concurrency is bounded by HBM size: after the weights (and the runtime's workspace), what is left
holds the KV caches of the users being served, so
``max_concurrency = floor((capacity - weights - workspace) / (kv_per_request + activations_per_request))``.
"""

from __future__ import annotations

import math

import numpy as np

LOGIT_BYTES = 4.0  # logits are materialised in fp32 for sampling (vLLM, TensorRT-LLM)


def kv_cache_bytes(num_requests, tokens, elems_per_token, kv_bytes) -> np.ndarray:
    """KV cache of ``num_requests`` sequences of ``tokens`` each: requests·tokens·elements·bytes."""
    return np.asarray(num_requests, dtype=float) * np.asarray(tokens, dtype=float) * elems_per_token * kv_bytes


def max_concurrency(capacity_bytes, fixed_bytes, per_request_bytes) -> np.ndarray:
    """How many requests fit beside the fixed footprint; 0 when not even the fixed part fits."""
    if isinstance(capacity_bytes, float | int) and isinstance(fixed_bytes, float | int) \
            and isinstance(per_request_bytes, float | int):
        return max(math.floor((capacity_bytes - fixed_bytes) / max(per_request_bytes, 1.0)), 0)
    free = np.asarray(capacity_bytes, dtype=float) - fixed_bytes
    per = np.maximum(np.asarray(per_request_bytes, dtype=float), 1.0)
    return np.maximum(np.floor(free / per), 0.0).astype(np.int64)
