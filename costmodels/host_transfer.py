"""HBM <-> host DDR transfers over the GPU's host link (PCIe or NVLink-C2C).

Context switching (Fu 2024, arXiv 2405.08944, §3.4): when HBM cannot hold every active user's KV
cache, serving the next user swaps the current user's cache out and the next one's in:
``t_switch = (KV_out + KV_in) / host_link_bandwidth``. The two copies share the link in the
paper's accounting; a full-duplex overlap would halve it at best.
"""

from __future__ import annotations

import numpy as np


def context_switch_time_s(kv_out_bytes, kv_in_bytes, host_bandwidth_bytes_per_s: float) -> np.ndarray:
    """(KV swapped out + KV swapped in) / host-link bandwidth."""
    return (np.asarray(kv_out_bytes, dtype=float) + kv_in_bytes) / host_bandwidth_bytes_per_s
