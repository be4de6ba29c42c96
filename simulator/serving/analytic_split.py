"""The analytical fast path of a prefill/decode split (Splitwise, arXiv 2311.18677; DistServe, arXiv
2401.09670), one pool at a time, vectorised over configurations like ``simulator.serving.analytic``:
``prefill_pool``, replicas that only prefill, each an M/G/1 queue of whole prompts
(``simulator.serving.mg1``); ``decode_pool``, replicas that only decode, whose running batch is the
fixed point u = 1 + kappa t_d(u) with no prefill on their steps, a request's KV transfer delaying its
second token.
"""

from __future__ import annotations

import numpy as np

from simulator.serving.analytic_tables import StepTables, _interp, _solve_batch
from simulator.serving.mg1 import _mean_wait, _wait_percentile


def prefill_pool(tables: StepTables, kind, replicas, rate, *, percentile: float = 0.9,
                 prompt_cv2: float = 0.0) -> dict[str, np.ndarray]:
    """Prefill replicas of a prefill/decode split (Splitwise, arXiv 2311.18677; DistServe, arXiv
    2401.09670): each an M/G/1 queue of prompts, TTFT = W + S_p."""
    kind, replicas, rate = np.broadcast_arrays(np.asarray(kind, dtype=np.int64), np.asarray(replicas, float),
                                               np.asarray(rate, float))
    s_p = tables.prefill_s[kind]
    lanes = tables.lane_count()[kind]
    rho = rate / (replicas * lanes) * s_p
    mean_wait = _mean_wait(rho, s_p, prompt_cv2)
    inf = np.where(rho >= 1.0, np.inf, 0.0)
    return {"saturated": rho >= 1.0, "busy_fraction": np.minimum(rho, 1.0), "capacity_req_per_s": replicas * lanes / s_p,
            "ttft_p50_s": s_p + _wait_percentile(mean_wait, rho, 0.5) + inf,
            "ttft_pct_s": s_p + _wait_percentile(mean_wait, rho, percentile) + inf,
            "ttft_mean_s": s_p + mean_wait + inf}


def decode_pool(tables: StepTables, kind, replicas, max_batch, rate, output_len, kv_transfer_s=0.0) -> dict[str, np.ndarray]:
    """Decode replicas of a prefill/decode split: no prefill interference, so TPOT = t_d(u) / k, plus
    the request's KV transfer, which delays its second token: kv_transfer_s / (O - 1) (vLLM's
    TPOT = (e2e - TTFT) / (O - 1)). A request's TPOT is the mean of many equal steps: p50 = pct."""
    kind, replicas, max_batch, rate, transfer = np.broadcast_arrays(
        np.asarray(kind, dtype=np.int64), np.asarray(replicas, float), np.asarray(max_batch, float),
        np.asarray(rate, float), np.asarray(kv_transfer_s, float))
    O = float(output_len)
    lanes = tables.lane_count()[kind]
    lam = rate / (replicas * lanes)
    k = tables.tokens_per_step[kind]
    steps = max(O - 1.0, 0.0) / k
    u = _solve_batch(tables, kind, lam * steps)
    d = tables.derived()
    cap = np.maximum(np.minimum(max_batch, tables.kv_capacity[kind] / lanes), 0.0)
    t_cap = _interp(d, "d", kind, np.maximum(cap, 1.0))
    lam_max = np.where(cap >= 1.0, cap / np.maximum(steps * t_cap, 1e-300), 0.0)
    saturated = (lam >= lam_max) | ~np.isfinite(u)
    u_ok = np.where(saturated, 1.0, u)
    tpot = _interp(d, "d", kind, u_ok) / k + transfer / max(O - 1.0, 1.0)
    tpot = tpot + np.where(saturated, np.inf, 0.0)
    return {"saturated": saturated, "capacity_req_per_s": lam_max * replicas * lanes,
            "batch_mean": lanes * np.where(saturated, cap, u_ok - 1.0),
            "busy_fraction": np.where(saturated, 1.0, 1.0 - np.exp(-(u_ok - 1.0))), "tpot_p50_s": tpot, "tpot_pct_s": tpot}


__all__ = ["decode_pool", "prefill_pool"]
