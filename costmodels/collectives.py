"""Collectives on a link, alpha-beta model.

Per-GPU traffic and step counts of ring algorithms (Thakur, Rabenseifner & Gropp 2005, "Optimization
of Collective Communication Operations in MPICH"; bus-bandwidth factors as in NVIDIA nccl-tests
doc/PERFORMANCE.md): all-reduce moves 2(n-1)/n·S in 2(n-1) steps; all-gather and reduce-scatter
(n-1)/n·S in n-1 steps; all-to-all (n-1)/n·S in n-1 steps; point-to-point S in one step.
``S`` is the full (unsharded) message size in bytes. n = 1 costs nothing.
"""

from __future__ import annotations

import numpy as np

from costmodels.numeric import num
_FACTORS = {  # collective -> (bytes factor as f(n), alpha steps as f(n))
    "all_reduce": (lambda n: 2.0 * (n - 1.0) / n, lambda n: 2.0 * (n - 1.0)),
    "all_gather": (lambda n: (n - 1.0) / n, lambda n: n - 1.0),
    "reduce_scatter": (lambda n: (n - 1.0) / n, lambda n: n - 1.0),
    "all_to_all": (lambda n: (n - 1.0) / n, lambda n: n - 1.0),
    "p2p": (lambda n: _more_than_one(n), lambda n: _more_than_one(n)),
}
COLLECTIVES = tuple(_FACTORS)


def _more_than_one(n):
    return float(n > 1) if isinstance(n, float) else np.where(n > 1, 1.0, 0.0)


def collective_traffic(collective: str, message_bytes, num_ranks):
    """(bytes each GPU sends, number of latency-bound steps) of one collective."""
    n = num(num_ranks)
    byte_factor, steps = _FACTORS[collective]
    return num(message_bytes) * byte_factor(n), steps(n) + 0.0 * n


def collective_time_s(collective: str, message_bytes, num_ranks, bandwidth_bytes_per_s: float, latency_s: float):
    """Ideal time of one collective: steps·alpha + traffic / bandwidth."""
    traffic, steps = collective_traffic(collective, message_bytes, num_ranks)
    return steps * latency_s + traffic / bandwidth_bytes_per_s
