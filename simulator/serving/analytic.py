"""The analytical fast path: steady-state serving metrics of a replica (or a prefill/decode split)
at a request rate, from step-time tables and queueing approximations, vectorised over millions of
configurations (numpy arrays over a configuration axis; no Python loop per configuration).

Notation (per replica): lambda the arrival rate, P and O the prompt and output tokens, k the tokens a
decode step commits per sequence (speculative decoding), t_d(b) one decode step of b sequences,
t_m(b) the same step carrying a prefill chunk of C tokens, S_p one prompt's prefill alone.

* Decode batch from Little's law (Little 1961): B = lambda (O - 1) TPOT. Arrivals are Poisson and each
  request stays a while, so the others in the batch are Poisson(B) (the M/G/inf property) and a request
  shares its steps with u = 1 + B sequences on average.
* Prefill work interleaves with decode steps. Prefill-first scheduling stops decoding for S_p per
  request; chunked prefill (Sarathi-Serve, arXiv 2403.02310) rides prompt chunks on decode steps, a
  step's extra time t_m - t_d being linear in its chunk tokens, so a request adds Delta = (P / C)
  (t_m - t_d). With Delta that marginal prefill time per request, the mean step a
  decoding request sees is tau = t_d(u) / (1 - lambda Delta), so TPOT = tau / k and u = 1 + lambda (O-1)
  tau / k; the fixed point is solved exactly on the piecewise-linear t_d table (two passes refresh Delta).
* TTFT = R + W + S_eff: R the residual of the decode step in progress (half a step while decoding), S_eff
  the prefill as the request sees it (n_c = ceil(P / (budget - B)) mixed steps carrying Delta in all,
  or S_p; S_p as well when nothing is decoding), and W the wait of an M/G/1 queue of
  prefills (Pollaczek-Khinchine, Kleinrock 1975, Queueing Systems I eq. 5.105):
  E[W] = rho S (1 + c_s^2) / (2 (1 - rho)), rho = lambda S_eff. For percentiles the wait of a delayed
  request is taken as exponential with mean E[W] / rho (the heavy-traffic limit, Kingman 1962):
  W_p = E[W] / rho * ln(rho / (1 - p)) when rho > 1 - p, else 0.
* TPOT percentiles: a request's decode time D is its (O-1)/k steps plus the prefill work of the
  Poisson(lambda D) arrivals it overlaps, so Var D = lambda D Delta^2 (compound Poisson) and
  TPOT_p = TPOT + z_p sqrt(Var D) / (O - 1).
* Capacity: with the batch cap M (min of max_num_seqs and the sequences whose KV fits) full, a replica
  completes lambda_max = M / ((O - 1) t_d(M) / k + M Delta) requests/s; load = lambda / lambda_max and
  the point is saturated at load >= 1 (the queue then grows without bound: no steady state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

# Batch sizes the step tables are evaluated at (1 .. 1024, about 1.5x apart); between them t_d is linear.
BATCH_GRID = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024], dtype=float)


@dataclass
class StepTables:
    """Step times of K replica kinds (one per row), all from the step model.

    ``decode_s[k, j]``: one decode step of ``grid[j]`` sequences at the mean context P + O/2;
    ``mixed_s[k, j]``: the same step carrying one prefill chunk of ``chunk_tokens[k]`` tokens (equal to
    ``decode_s`` under prefill-first scheduling); ``prefill_s[k]``: one prompt's prefill alone;
    ``tokens_per_step[k]``: tokens a decode step commits per sequence; ``kv_capacity[k]``: sequences whose
    KV cache fits at the full context P + O; ``chunk_tokens[k]``: the prefill chunk ``mixed_s`` carries (0:
    prefill-first); ``budget_tokens[k]``: tokens per step (vLLM max_num_batched_tokens), decodes first;
    ``new_prompt_tokens[k]``: prompt tokens prefill computes (fewer than P with a prefix-cache hit).
    """

    grid: np.ndarray
    decode_s: np.ndarray
    mixed_s: np.ndarray
    prefill_s: np.ndarray
    tokens_per_step: np.ndarray
    kv_capacity: np.ndarray
    chunk_tokens: np.ndarray
    budget_tokens: np.ndarray
    new_prompt_tokens: np.ndarray

    @property
    def kinds(self) -> int:
        return self.decode_s.shape[0]


def _interp_rows(table: np.ndarray, grid: np.ndarray, kind: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``table[kind]`` linearly interpolated at ``b`` (extrapolated beyond the ends), element-wise."""
    g = grid.size
    j = np.clip(np.searchsorted(grid, b, side="right") - 1, 0, g - 2)
    flat = table.ravel()
    lo = flat[kind * g + j]
    hi = flat[kind * g + j + 1]
    return lo + (hi - lo) * (b - grid[j]) / (grid[j + 1] - grid[j])


def _solve_batch(tables: StepTables, kind: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """u with u = 1 + kappa t_d(u) (the first crossing), exact on the piecewise-linear table; inf when
    the table's largest batch cannot keep up. (u - 1) / t_d(u) rises with u, so the crossing segment is
    found by bisection over the grid."""
    grid, t = tables.grid, tables.decode_s
    g = grid.size
    r = ((grid - 1.0) / t).ravel()  # crossing at grid j once kappa < r[k, j]
    lo = np.zeros(kind.shape, dtype=np.int64)
    hi = np.full(kind.shape, g, dtype=np.int64)
    base = kind * g
    for _ in range(int(np.ceil(np.log2(g + 1)))):
        mid = (lo + hi) // 2
        above = r[base + np.minimum(mid, g - 1)] > kappa
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid + 1)
    j = np.clip(hi, 1, g - 1)
    flat = t.ravel()
    t0, t1 = flat[base + j - 1], flat[base + j]
    slope = (t1 - t0) / (grid[j] - grid[j - 1])
    intercept = t0 - slope * grid[j - 1]
    u = (1.0 + kappa * intercept) / np.maximum(1.0 - kappa * slope, 1e-12)
    return np.where(hi >= g, np.inf, np.maximum(u, 1.0))


def _wait_percentile(mean_wait, rho, p):
    """The p-quantile of an M/G/1 wait with an exponential tail for delayed requests."""
    rho_c = np.clip(rho, 1e-12, 1.0 - 1e-12)
    tail = mean_wait / rho_c * np.log(np.maximum(rho_c / (1.0 - p), 1.0))
    return np.where(rho_c > 1.0 - p, tail, 0.0)


def colocated(tables: StepTables, kind, replicas, max_batch, rate, prompt_len, output_len, *,
              percentile: float = 0.9, prompt_cv2: float = 0.0) -> dict[str, np.ndarray]:
    """Steady state of ``replicas`` identical replicas of ``kind`` behind a balanced router, all
    arguments broadcasting over a configuration axis. Times in seconds; ``saturated`` where no steady
    state exists (latencies inf there)."""
    kind, replicas, max_batch, rate = np.broadcast_arrays(np.asarray(kind, dtype=np.int64), np.asarray(replicas, float),
                                                         np.asarray(max_batch, float), np.asarray(rate, float))
    P, O = float(prompt_len), float(output_len)
    lam = rate / replicas
    k = tables.tokens_per_step[kind]
    s_p = tables.prefill_s[kind]
    chunk = tables.chunk_tokens[kind]
    chunked = chunk > 0
    new = tables.new_prompt_tokens[kind]
    share = new / np.maximum(chunk, 1.0)  # prompt tokens in units of the table's chunk
    steps = max(O - 1.0, 0.0) / k  # decode steps per request

    def marginal(u):
        """Prefill time per request that decode steps pay: S_p, or its tokens' share of t_m - t_d
        (a mixed step's extra time is linear in its chunk tokens) when chunked."""
        extra = _interp_rows(tables.mixed_s, tables.grid, kind, u) - _interp_rows(tables.decode_s, tables.grid, kind, u)
        return np.where(chunked, share * np.maximum(extra, 0.0), s_p)

    delta = marginal(np.ones_like(lam))
    for _ in range(2):
        free = np.maximum(1.0 - lam * delta, 1e-12)
        u = _solve_batch(tables, kind, lam * steps / free)
        delta = marginal(np.where(np.isfinite(u), u, 1.0))
    free = 1.0 - lam * delta
    cap = np.minimum(max_batch, tables.kv_capacity[kind])
    t_cap = _interp_rows(tables.decode_s, tables.grid, kind, np.maximum(cap, 1.0))
    delta_cap = marginal(np.maximum(cap, 1.0))
    lam_max = np.where(cap >= 1.0, cap / (steps * t_cap + cap * delta_cap), 0.0)
    load = np.where(lam_max > 0, lam / np.maximum(lam_max, 1e-300), np.inf)
    saturated = (load >= 1.0) | ~np.isfinite(u) | (free <= 0.0)
    u_ok = np.where(saturated, 1.0, u)
    batch = u_ok - 1.0  # mean sequences decoding (Little)
    t_d = _interp_rows(tables.decode_s, tables.grid, kind, u_ok)
    free_ok = np.where(saturated, 1.0, free)
    tpot = t_d / (k * free_ok)
    busy = 1.0 - np.exp(-batch)  # P(someone is decoding), Poisson occupancy
    # decodes take their tokens of the budget first; the prompt spreads over n_c steps of the rest
    n_c = np.where(chunked, np.ceil(new / np.maximum(tables.budget_tokens[kind] - batch * k, 1.0)), 1.0)
    s_eff = np.where(chunked, busy * (n_c * t_d + delta) + (1.0 - busy) * s_p, s_p)
    rho = lam * s_eff
    mean_wait = rho * s_eff * (1.0 + prompt_cv2) / (2.0 * np.maximum(1.0 - rho, 1e-12))
    residual = busy * (1.0 - rho) * t_d / 2.0
    ttft_base = residual + s_eff
    decode_time = steps * tpot * k
    z = float(ndtri(percentile))
    spread = np.sqrt(lam * np.maximum(decode_time, 0.0) * delta**2) / max(O - 1.0, 1.0)
    prefill_fraction = np.where(saturated, 1.0, lam * delta)
    saturated = saturated | (rho >= 1.0)
    inf = np.where(saturated, np.inf, 0.0)
    return {
        "rate_per_replica": lam,
        "capacity_req_per_s": lam_max * replicas,
        "load": load,
        "saturated": saturated,
        "batch_mean": np.where(saturated, cap, batch),
        "ttft_p50_s": ttft_base + _wait_percentile(mean_wait, rho, 0.5) + inf,
        "ttft_pct_s": ttft_base + _wait_percentile(mean_wait, rho, percentile) + inf,
        "ttft_mean_s": ttft_base + mean_wait + inf,
        "tpot_p50_s": tpot + inf,
        "tpot_pct_s": tpot + max(z, 0.0) * spread + inf,
        "throughput_tokens_per_s": np.where(saturated, lam_max * replicas * (P + O), rate * (P + O)),
        "prefill_fraction": np.minimum(prefill_fraction, 1.0),
        "decode_fraction": np.where(saturated, 0.0, busy * (1.0 - np.minimum(prefill_fraction, 1.0))),
    }


def prefill_pool(tables: StepTables, kind, replicas, rate, *, percentile: float = 0.9,
                 prompt_cv2: float = 0.0) -> dict[str, np.ndarray]:
    """Prefill replicas of a prefill/decode split (Splitwise, arXiv 2311.18677; DistServe, arXiv
    2401.09670): each an M/G/1 queue of prompts, TTFT = W + S_p."""
    kind, replicas, rate = np.broadcast_arrays(np.asarray(kind, dtype=np.int64), np.asarray(replicas, float),
                                               np.asarray(rate, float))
    s_p = tables.prefill_s[kind]
    rho = rate / replicas * s_p
    mean_wait = rho * s_p * (1.0 + prompt_cv2) / (2.0 * np.maximum(1.0 - rho, 1e-12))
    inf = np.where(rho >= 1.0, np.inf, 0.0)
    return {"saturated": rho >= 1.0, "busy_fraction": np.minimum(rho, 1.0), "capacity_req_per_s": replicas / s_p,
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
    lam = rate / replicas
    k = tables.tokens_per_step[kind]
    steps = max(O - 1.0, 0.0) / k
    u = _solve_batch(tables, kind, lam * steps)
    cap = np.minimum(max_batch, tables.kv_capacity[kind])
    t_cap = _interp_rows(tables.decode_s, tables.grid, kind, np.maximum(cap, 1.0))
    lam_max = np.where(cap >= 1.0, cap / np.maximum(steps * t_cap, 1e-300), 0.0)
    saturated = (lam >= lam_max) | ~np.isfinite(u)
    u_ok = np.where(saturated, 1.0, u)
    tpot = _interp_rows(tables.decode_s, tables.grid, kind, u_ok) / k + transfer / max(O - 1.0, 1.0)
    tpot = tpot + np.where(saturated, np.inf, 0.0)
    return {"saturated": saturated, "capacity_req_per_s": lam_max * replicas, "batch_mean": np.where(saturated, cap, u_ok - 1.0),
            "busy_fraction": np.where(saturated, 1.0, 1.0 - np.exp(-(u_ok - 1.0))), "tpot_p50_s": tpot, "tpot_pct_s": tpot}


__all__ = ["BATCH_GRID", "StepTables", "colocated", "decode_pool", "prefill_pool"]
