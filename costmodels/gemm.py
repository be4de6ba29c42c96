"""FLOPs and HBM bytes of a dense matrix multiply ``[m, k] @ [k, n]``.

FLOPs = 2·m·k·n (one multiply and one add per term). Bytes are the compulsory traffic: the
activations in, the weights once and the output once — a tiled GEMM re-reads tiles from L2, not
HBM, at the sizes of transformer layers (Kaplan et al. 2020, arXiv 2001.08361, Table 1 for the
2N-per-token convention).
"""

from __future__ import annotations

import numpy as np

from costmodels.numeric import num


def gemm_flops(m, k, n) -> np.ndarray:
    """2·m·k·n."""
    return 2.0 * (m if type(m) is float else num(m)) * k * n


def gemm_bytes(m, k, n, act_bytes, weight_bytes, out_bytes=None, bias: bool = False) -> np.ndarray:
    """Input activations m·k, weights k·n (+ bias n), output m·n, each read or written once."""
    out_bytes = act_bytes if out_bytes is None else out_bytes
    m = m if type(m) is float else num(m)
    weights = k * n * weight_bytes + (n * act_bytes if bias else 0.0)
    return m * k * act_bytes + weights + m * n * out_bytes


def grouped_gemm_bytes(rows, k, n, act_bytes, weight_bytes, weight_sets, bias: bool = False):
    """A (grouped) GEMM over ``rows`` rows that reads ``weight_sets`` (k, n) weight matrices: the rows in
    and out once and each weight set once (routed experts: the distinct experts the rows touch; a dense
    GEMM: 1)."""
    sets = weight_sets if type(weight_sets) is float else num(weight_sets)
    return gemm_bytes(rows, k, n, act_bytes, 0.0, bias=bias) + sets * k * n * weight_bytes
