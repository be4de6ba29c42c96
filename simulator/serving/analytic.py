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
* TTFT = R + W + S_eff. Prefill is a FCFS stream of work: S_w = P (x / C + t_d / c) per request under
  chunked prefill (each of a step's c = budget - B k prompt tokens costs x / C of t_m - t_d = x and its
  share of the step's t_d), S_p under prefill-first; rho = lambda S_w. W is the M/G/1 wait
  (Pollaczek-Khinchine, Kleinrock 1975, Queueing Systems I eq. 5.105): E[W] = rho S_w (1 + c_s^2) /
  (2 (1 - rho)); for percentiles a delayed request's wait is taken as exponential with mean E[W] / rho
  (the heavy-traffic limit, Kingman 1962): W_p = E[W] / rho * ln(rho / (1 - p)) when rho > 1 - p, else 0.
  S_eff is the prompt's own steps: n_c = ceil(P / c), the last carrying its remaining tokens and, with
  probability rho, a waiting prompt's (S_p when nothing is decoding). R = (1 - rho) t_d / 2 is the rest of
  the decode step in progress at arrival.
* TPOT percentiles: a request's decode time D is its (O-1)/k steps plus the prefill work of the
  Poisson(lambda D) arrivals it overlaps, so Var D = lambda D Delta^2 (compound Poisson) and
  TPOT_p = TPOT + z_p sqrt(Var D) / (O - 1).
* Capacity: with the batch cap M (min of max_num_seqs and the sequences whose KV fits) full, a replica
  completes lambda_max = M / ((O - 1) t_d(M) / k + M Delta) requests/s; load = lambda / lambda_max and
  the point is saturated at load >= 1 (the queue then grows without bound: no steady state).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri

# Batch sizes the step tables are evaluated at: 1 .. 1024 in half-octaves (2^(j/2)), so a batch's
# segment is found arithmetically, j = floor(2 log2 b); between grid points t_d is linear.
BATCH_GRID = 2.0 ** (np.arange(21) / 2.0)
_PER_OCTAVE = 2.0
_WIDTH = 32  # bisection width (a power of two above the grid size)


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
    ``grid`` must be ``BATCH_GRID``.
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
    _derived: dict | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def kinds(self) -> int:
        return self.decode_s.shape[0]

    def derived(self) -> dict[str, np.ndarray]:
        """Flat per-segment intercepts and slopes of t_d and of t_m - t_d, and the bisection keys
        r = (g - 1) / t_d(g) padded with +inf (computed once per table)."""
        if self._derived is None:
            if self.grid.shape != BATCH_GRID.shape or not np.allclose(self.grid, BATCH_GRID):
                raise ValueError("step tables must be evaluated on BATCH_GRID")
            g = self.grid
            out = {}
            for name, t in (("d", self.decode_s), ("x", self.mixed_s - self.decode_s)):
                slope = np.diff(t, axis=1) / np.diff(g)
                out[name + "_s"] = slope.ravel()
                out[name + "_a"] = (t[:, :-1] - slope * g[:-1]).ravel()
            r = np.full((self.kinds, _WIDTH), np.inf)
            r[:, : g.size] = (g - 1.0) / self.decode_s
            out["r"] = r.ravel()
            self._derived = out
        return self._derived


def _segment(b: np.ndarray) -> np.ndarray:
    """Index j of the grid segment [g_j, g_j+1] holding b (the end segments extrapolate)."""
    j = np.floor(_PER_OCTAVE * np.log2(np.maximum(b, 1.0))).astype(np.int64)
    return np.minimum(j, BATCH_GRID.size - 2)


def _interp(d: dict, name: str, kind: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The table ``name`` ("d": t_d, "x": t_m - t_d) of ``kind`` at batch ``b``, element-wise."""
    i = kind * (BATCH_GRID.size - 1) + _segment(b)
    return d[name + "_a"][i] + d[name + "_s"][i] * b


def _solve_batch(tables: StepTables, kind: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """u with u = 1 + kappa t_d(u) (the first crossing), exact on the piecewise-linear table; inf when
    the table's largest batch cannot keep up. (u - 1) / t_d(u) rises with u, so the last grid point
    still below the line is found by a branch-free bisection."""
    d = tables.derived()
    r, g = d["r"], BATCH_GRID.size
    base = kind * _WIDTH
    pos = np.zeros(kind.shape, dtype=np.int64)  # r[k, 0] = 0 <= kappa
    step = _WIDTH // 2
    while step:
        pos += step * (r[base + pos + step] <= kappa)
        step //= 2
    seg = np.minimum(pos, g - 2)
    i = kind * (g - 1) + seg
    u = (1.0 + kappa * d["d_a"][i]) / np.maximum(1.0 - kappa * d["d_s"][i], 1e-12)
    return np.where(pos >= g - 1, np.inf, np.maximum(u, 1.0))


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

    d = tables.derived()

    def marginal(u):
        """Prefill time per request that decode steps pay: S_p, or its tokens' share of t_m - t_d
        (a mixed step's extra time is linear in its chunk tokens) when chunked."""
        return np.where(chunked, share * np.maximum(_interp(d, "x", kind, u), 0.0), s_p)

    delta = marginal(np.ones_like(lam))
    for _ in range(2):
        free = np.maximum(1.0 - lam * delta, 1e-12)
        kappa = lam * steps / free
        u = _solve_batch(tables, kind, kappa)
        delta = marginal(np.where(np.isfinite(u), u, 1.0))
    free = 1.0 - lam * delta
    cap = np.maximum(np.minimum(max_batch, tables.kv_capacity[kind]), 0.0)
    cap1 = np.maximum(cap, 1.0)
    lam_max = np.where(cap >= 1.0, cap / (steps * _interp(d, "d", kind, cap1) + cap * marginal(cap1)), 0.0)
    load = np.where(lam_max > 0, lam / np.maximum(lam_max, 1e-300), np.inf)
    saturated = (load >= 1.0) | ~np.isfinite(u) | (free <= 0.0)
    u_ok = np.where(saturated, 1.0, u)
    batch = u_ok - 1.0  # mean sequences decoding (Little)
    t_d = _interp(d, "d", kind, u_ok)
    free_ok = np.where(saturated, 1.0, free)
    tpot = t_d / (k * free_ok)
    busy = 1.0 - np.exp(-batch)  # P(someone is decoding), Poisson occupancy
    # Chunked: decodes take their tokens of the budget first, so a step has c = budget - B k prompt
    # tokens and each costs x / C (x = t_m - t_d, C the table's chunk) besides the step's own t_d. The
    # prompt spreads over n_c = ceil(P / c) steps; its last step carries its remaining r tokens and, when
    # a prompt waits (probability rho), fills up with that one's. Prefill-first: one step of S_p.
    per_tok = np.maximum(_interp(d, "x", kind, u_ok), 0.0) / np.maximum(chunk, 1.0)
    c = np.maximum(tables.budget_tokens[kind] - batch * k, 1.0)
    n_c = np.ceil(new / c)
    remaining = new - (n_c - 1.0) * c
    s_w = np.where(chunked, new * (per_tok + t_d / c), s_p)  # prefill work per request
    rho = lam * s_w
    last = t_d + per_tok * (remaining + np.minimum(rho, 1.0) * (c - remaining))
    s_eff = np.where(chunked, busy * ((n_c - 1.0) * (t_d + per_tok * c) + last) + (1.0 - busy) * s_p, s_p)
    mean_wait = rho * s_w * (1.0 + prompt_cv2) / (2.0 * np.maximum(1.0 - rho, 1e-12))
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
    d = tables.derived()
    cap = np.maximum(np.minimum(max_batch, tables.kv_capacity[kind]), 0.0)
    t_cap = _interp(d, "d", kind, np.maximum(cap, 1.0))
    lam_max = np.where(cap >= 1.0, cap / np.maximum(steps * t_cap, 1e-300), 0.0)
    saturated = (lam >= lam_max) | ~np.isfinite(u)
    u_ok = np.where(saturated, 1.0, u)
    tpot = _interp(d, "d", kind, u_ok) / k + transfer / max(O - 1.0, 1.0)
    tpot = tpot + np.where(saturated, np.inf, 0.0)
    return {"saturated": saturated, "capacity_req_per_s": lam_max * replicas, "batch_mean": np.where(saturated, cap, u_ok - 1.0),
            "busy_fraction": np.where(saturated, 1.0, 1.0 - np.exp(-(u_ok - 1.0))), "tpot_p50_s": tpot, "tpot_pct_s": tpot}


__all__ = ["BATCH_GRID", "StepTables", "colocated", "decode_pool", "prefill_pool"]
