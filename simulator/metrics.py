"""How well a priced step uses the GPU: MFU, MBU, MoE-CAP's S-MFU / S-MBU, and NanoFlow's optimum.

Every metric is a ratio of work the step does to what the device could do in the step's time, so each
is at most 1 on any profile (at most 1 exactly under ``peak``):

* **MFU** (Chowdhery et al. 2022, PaLM, arXiv 2204.02311, App. B): FLOPs / (latency · peak). The peak
  is that of each operator's number format (an fp8 GEMM against the fp8 tensor-core peak, attention
  against bf16): MFU = Σ_op FLOPs_op / peak_op / latency (``StepResult.format_peak_s``). Work a GPU
  waits for (the busiest expert GPU under load imbalance) is time, not FLOPs.
* **MBU**: HBM bytes moved / (latency · peak bandwidth).
* **S-MFU / S-MBU** (Jiang et al. 2024, MoE-CAP, arXiv 2412.07067; formulas of MoE-CAP's
  ``moe_cap/utils/basic_utils.py``): only the activated experts count. S-MBU = [Σ_layers (attention +
  activated experts' params) · bytes/param + KV bytes decode attention reads] / latency / (n_gpu ·
  bandwidth); S-MFU = [2 · (attention + top-k + shared expert params) · L · tokens + attention FLOPs] /
  latency / (n_gpu · peak). Tokens are those the step computes (a cached prefix is not recomputed)
  and KV bytes those its attention operators read (a shared prefix read once is read once). The
  parameter bytes and FLOPs are those the step's layer GEMMs read and do as priced (the distinct routed
  experts a batch touches, ``costmodels.moe.expected_distinct_experts``, and the top-k rows routed to
  them; only the layers and tokens a technique runs, e.g. early exit, a block transformer), so neither
  counts work the step was not priced for.
* **NanoFlow's optimum** (Zhu et al. 2024, arXiv 2408.12757, §3): achievable FLOP/s per GPU /
  (2 · active parameters) tokens per second.

Configuration-only parts (active parameters) are computed once per deployment (``Deployment.cached``).
"""

from __future__ import annotations

import numpy as np

from costmodels import roofline


def mfu(step, dep):
    """Model FLOPs utilisation at each operator's format peak: Σ FLOPs/peak_op / latency."""
    return step.format_peak_s / step.latency_s


def mbu(step, dep):
    """HBM bandwidth utilisation: bytes / (latency · peak bandwidth)."""
    return _per_latency(step.hbm_bytes / step.latency_s, 1.0 / dep.hbm_bandwidth_bytes_per_s)


# Launch sizes at which a profile's curves have reached their plateau: the calibrated ceilings are the
# efficiency of a 1 PFLOP GEMM and of a 1 TB copy (both beyond the largest points any profile measures).
LARGE_FLOPS, LARGE_BYTES = 1e15, 1e12


def calibrated_ceilings(gpu, profile, compute_dtype: str) -> dict[str, float]:
    """Datasheet peaks of ``gpu`` and the calibrated ones: the peaks times the profile's efficiency
    for large GEMMs (``LARGE_FLOPS``) and large copies (``LARGE_BYTES``), the roofline's two ceilings."""
    peak = float(gpu.peak_for(compute_dtype))
    bw = float(gpu.hbm_bandwidth_bytes_per_s)
    return {
        "peak_flops": peak,
        "peak_bw": bw,
        "cal_flops": peak * float(profile.kind("gemm").compute(LARGE_FLOPS)),
        "cal_bw": bw * float(profile.kind("memory").memory(LARGE_BYTES)),
    }


def compute_bound_at_peak(flops, nbytes, peak_flops_per_s, bandwidth_bytes_per_s):
    """Whether a launch's ideal roofline floor is set by compute (``costmodels.roofline``)."""
    return roofline.compute_bound_at_peak(flops, nbytes, peak_flops_per_s, bandwidth_bytes_per_s)


def dominant_phase(phase: str, ttft_s, decode_s) -> str:
    """The phase a request spends most of its time in: generate is prefill (TTFT) then decode."""
    if phase != "generate":
        return phase
    return "decode" if decode_s > ttft_s else "prefill"


def active_params(model) -> int:
    """Parameters a token multiplies: all but unrouted experts and the input embedding table (a lookup)."""
    return model.active_params(count_input_embedding=False, count_output_head=True)


def optimal_tokens_per_s_per_gpu(dep, params: float | None = None):
    """NanoFlow's optimum: achievable FLOP/s per GPU / (2 · active parameters)."""
    flops = dep.peak_flops_per_s if dep.achievable_flops_per_s is None else dep.achievable_flops_per_s
    p = dep.cached("active_params", active_params, dep.model) if params is None else params
    return np.asarray(flops, dtype=float) / (2.0 * p) if isinstance(flops, np.ndarray) else flops / (2.0 * p)


def sparse_utilisation(dep, step):
    """MoE-CAP's (S-MBU, S-MFU) of a priced step (see the module docstring), from what its layers' GEMMs
    read and do as priced (``step.weight_read_bytes``, ``step.layer_gemm_flops``: the routed experts'
    distinct weights and routed rows, only the layers a technique runs) and what attention reads and does
    (``step.kv_read_bytes``, ``step.attention_flops``)."""
    # (small terms first: one pass over a sweep's grid per operation)
    s_mbu = _per_latency(step.weight_read_bytes + step.kv_read_bytes, 1.0 / dep.hbm_bandwidth_bytes_per_s,
                         step.latency_s)
    # / (latency · format peak) with format peak = FLOPs / format_peak_s
    s_mfu = _per_latency(step.layer_gemm_flops + step.attention_flops, step.format_peak_s, step.flops,
                         step.latency_s)
    return s_mbu, s_mfu


def _per_latency(x, factor, *divisors):
    """``x · factor / d_1 / d_2 ...``; on a sweep's grid each step is done in place in ``x`` (an array the
    caller has just computed), so that no further grid-sized array is allocated."""
    for d in divisors:
        if isinstance(x, np.ndarray) and x.ndim and np.broadcast_shapes(x.shape, np.shape(d)) == x.shape:
            x /= d
        else:
            x = x / d  # a scalar, or grows to the divisor's shape: a new array, ours from here on
    if isinstance(x, np.ndarray) and x.ndim and np.broadcast_shapes(x.shape, np.shape(factor)) == x.shape:
        x *= factor
        return x
    return x * factor
