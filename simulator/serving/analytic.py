"""The analytical fast path: steady-state serving metrics of a co-located replica at a request rate
(the pools of a prefill/decode split: ``simulator.serving.analytic_split``), from step-time tables
(``simulator.serving.analytic_tables``, whose docstring sets the notation) and queueing
approximations, vectorised over millions of configurations (numpy arrays over a configuration axis;
no Python loop per configuration).

* **Steps and the decode batch.** Steps run back to back; prompts arrive at m = lambda tau prompts per
  step of mean duration tau, a step carrying a Poisson(m) number of them up to its capacity c = T - B k.
  Its expected extra time is E[X(n)] = s1 m P + (s2 - s1) P E[(min(K, c / P) - 1)^+] (s1, s2 the slopes
  of X below and above C, K ~ Poisson(m)), i.e. Delta(m) = E[X] / m per request: prompts sharing a step
  cost the steeper slope of X (a step's extra time is convex in its prompt tokens: the first ride on the
  decode step's weight reads, the next are compute-bound). tau = t_d(u) + m Delta, and Little's law
  (Little 1961) gives the running batch B = lambda (O - 1) tau / k; a request shares its steps with
  u = 1 + B sequences (Poisson occupancy, the M/G/inf property). The fixed point u = 1 + kappa t_d(u),
  kappa = lambda (O - 1) / (k (1 - lambda Delta)), is solved exactly on the piecewise-linear t_d table,
  Delta refreshed three times. TPOT = tau / k.
* **TTFT.** Chunked prefill: ``simulator.serving.prefill_queue`` (the queue of prompt tokens that steps
  serve: the step in progress, the prompts ahead, the steps a prompt spans, the prompts that join its
  last step), whose quantiles are exact for its piecewise-linear CDF. Prefill-first scheduling (vLLM V0
  without chunked prefill): prompts are an M/G/1 queue of service S_p (a prompt prefilled alone; its
  wait: ``simulator.serving.mg1``), plus R = (1 - rho) t_d / 2, the rest of the decode step in progress.
* **TPOT percentiles**: a request's decode time D gains the prefill work of the Poisson(lambda D)
  arrivals it overlaps: Var D = lambda D Delta^2 (compound Poisson), TPOT_p = TPOT + z_p sqrt(Var D) / (O - 1).
* **Capacity**: with the batch cap M (min of max_num_seqs and the sequences whose KV fits) full, each
  step admits m = M k / (O - 1) prompts, so lambda_max = M / ((O - 1) tau_M / k), tau_M = t_d(M) + m Delta(m);
  when those prompts overflow the budget (m P > T - M k) the batch is limited to B_T = T / (P k / (O - 1) + k).
  load = lambda / lambda_max; saturated at load >= 1 or where the prefill queue is unstable.
* **Pipeline lanes** (``StepTables.lanes``): under chunked prefill a pp-stage replica's lanes are
  ``simulator.serving.analytic_pipeline``'s; under prefill-first the replica is one server whose decode
  step is a lane batch's trip (``_steady``).

TTFT and TPOT depend on a configuration only through its kind and lambda (the cap only sets where it
saturates), so they are evaluated once per kind on a grid of lambda up to the kind's largest capacity
(``_curves``, 40 points dense near saturation) and interpolated per configuration.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from simulator.serving import pipeline_queue as pq
from simulator.serving.analytic_pipeline import _lane_parts, _piped, _pipeline_capacity, _pipeline_model
from simulator.serving.analytic_tables import BATCH_GRID, StepTables, _interp, _segment, _solve_batch, _step_parts
from simulator.serving.mg1 import _mean_wait, _mixture_quantile, _wait_percentile
from simulator.serving.prefill_queue import ttft as chunked_ttft

LOAD_POINTS = 40  # lambda grid per kind: s_g = 1 - (1 - g / G)^2 of the kind's largest capacity
EXACT_POINTS = 4096  # up to this many configurations the model is evaluated at their own rates


def _marginal(tables: StepTables, kind, u, m):
    """Delta: the step time one request's prompt adds to the steps it rides on, with m prompts per step
    on average (chunked: E[X(n)] / m for n the Poisson prompt tokens of a step; prefill-first: S_p)."""
    _, xc, xt = _step_parts(tables, kind, u)
    C = np.maximum(tables.chunk_tokens[kind], 1.0)
    T = tables.budget_tokens[kind]
    P = tables.new_prompt_tokens[kind]
    s1 = xc / C
    s2 = np.where(T > C, (xt - xc) / np.maximum(T - C, 1.0), s1)
    c = np.maximum(T - (u - 1.0) * tables.tokens_per_step[kind], 1.0)
    room = c / np.maximum(P, 1.0)  # prompts per step
    m = np.maximum(m, 0.0)
    # E[(min(K, room) - 1)^+] / m = sum_{j >= 2} P(K >= j) min(1, room - (j - 1))^+ / m
    shared = np.zeros(np.shape(m))
    if np.any((P < T) & (room > 1.0)):
        top = int(min(64.0, np.ceil(np.max(np.where(P < T, room, 1.0), initial=1.0))))
        pmf = np.exp(-m)  # P(K = 0)
        below = pmf.copy()  # P(K <= j - 1)
        for j in range(1, top + 1):
            pmf = pmf * m / j
            if j >= 2:
                shared = shared + (1.0 - below) * np.clip(room - (j - 1.0), 0.0, 1.0)
            below = below + pmf
        shared = np.where(m > 0, shared / np.maximum(m, 1e-300), 0.0)
    chunked = s1 * P + np.where(P < T, (s2 - s1) * P * shared, 0.0)
    return np.where(tables.chunk_tokens[kind] > 0, chunked, tables.prefill_s[kind])


def _lane_batch(tables: StepTables, kind, u):
    """The batch of the lane a request runs in when u - 1 sequences run in all (1 + (u - 1) / lanes)."""
    return 1.0 + (u - 1.0) / tables.lane_count()[kind]


def _steady(tables: StepTables, kind, lam, steps):
    """u, the mean step tau, Delta and 1 - lambda Delta at arrival rate ``lam`` (see the docstring). A
    pipeline under prefill-first scheduling is one server whose decode step is a lane batch's trip:
    v = 1 + (u - 1) / p solves v = 1 + (kappa / p) t_d(v), each prompt taking its own trip S_p."""
    p = tables.lane_count()[kind]
    d = tables.derived()
    delta = _marginal(tables, kind, np.ones_like(lam), np.zeros_like(lam))
    for _ in range(3):
        free = np.maximum(1.0 - lam * delta, 1e-12)
        v = _solve_batch(tables, kind, lam * steps / (free * p))
        ok = np.isfinite(v)
        tau = np.where(ok, _interp(d, "d", kind, np.where(ok, v, 1.0)), np.inf) / free
        delta = _marginal(tables, kind, np.where(ok, v, 1.0), np.where(ok, lam * tau, 0.0))
    free = 1.0 - lam * delta
    v = _solve_batch(tables, kind, lam * steps / (np.maximum(free, 1e-12) * p))
    ok = np.isfinite(v) & (free > 0)
    tau = np.where(ok, _interp(d, "d", kind, np.where(ok, v, 1.0)) / np.where(ok, free, 1.0), np.inf)
    return np.where(ok, 1.0 + p * (v - 1.0), np.inf), tau, delta, free


def _capacity(tables: StepTables, kind, cap, steps):
    """Requests/s a replica serves with ``cap`` sequences running in each lane (0 where cap < 1);
    ``steps`` is the decode steps per request, (O - 1) / k. A pipeline's capacity is where batches filled
    by Poisson arrivals no longer keep up (``_pipeline_capacity``); driven harder, its queue fills every
    batch alike, up to ``even``: each lane admits the prompts its completions free, cap / steps per cycle
    (fixed output lengths finish a lane's sequences evenly), and the cycle is one such batch's trip."""
    P = np.maximum(tables.new_prompt_tokens[kind], 1.0)
    k = tables.tokens_per_step[kind]
    T = tables.budget_tokens[kind]
    p = tables.lane_count()[kind]
    chunked = tables.chunk_tokens[kind] > 0
    decodes = steps > 0
    run = np.maximum(steps, 1e-300)
    M = np.maximum(np.minimum(cap, np.where(chunked & decodes, T / (P / run + k), np.inf)), 1.0)  # B_T
    t_d, xc, xt = _step_parts(tables, kind, M)
    m = M / run  # prompts per step (per lane batch)
    single = t_d + m * _marginal(tables, kind, M, np.where(decodes, m, 0.0))
    _, s1, s2, _ = _lane_parts(tables, kind, M)
    even = t_d + pq.extra_s(s1, s2, np.maximum(tables.chunk_tokens[kind], 1.0), m * P)
    piped = _piped(tables, kind)
    tau = np.where(piped, even, single)
    prompts_only = np.where(chunked, p * T / (P * (t_d + np.where(tables.chunk_tokens[kind] >= T, xc, xt))),
                            p / tables.prefill_s[kind])  # one output token: prompts in full steps
    rate = np.where(decodes, p * M / (run * tau), prompts_only)
    live = piped & decodes & (cap >= 1.0)
    if np.any(live):
        shape = np.shape(rate)
        kind, M, run, rate, live = (np.broadcast_to(v, shape).ravel().copy() for v in (kind, M, run, rate, live))
        i = np.flatnonzero(live)
        rate[i] = _pipeline_capacity(tables, kind[i], M[i], run[i], rate[i])
        rate = rate.reshape(shape)
    return np.where(cap >= 1.0, rate, 0.0)


def _capacities(tables: StepTables, O: float) -> np.ndarray:
    """(K, len(BATCH_GRID)): requests/s a lane serves at each batch cap of the grid (KV-limited)."""
    K = tables.kinds
    kind = np.repeat(np.arange(K), BATCH_GRID.size)
    kv = np.repeat(tables.kv_capacity / tables.lane_count(), BATCH_GRID.size)
    steps = max(O - 1.0, 0.0) / np.repeat(tables.tokens_per_step, BATCH_GRID.size)
    return _capacity(tables, kind, np.minimum(np.tile(BATCH_GRID, K), kv), steps).reshape(K, -1)


def _model(tables: StepTables, kind, lam, P: float, O: float, percentile: float, cv2: float) -> dict[str, np.ndarray]:
    """The steady state, TTFT and TPOT of one replica of ``kind`` at arrival rate ``lam`` (per point;
    inf where the uncapped batch or the prefill queue has no steady state)."""
    out = {name: np.full(lam.size, np.inf) for name in ("u", "tpot", "tpot_pct", "ttft_p50", "ttft_pct", "ttft_mean")}
    out.update(prefill_fraction=np.ones(lam.size), busy=np.ones(lam.size))
    piped = _piped(tables, kind)
    for mask, model in ((~piped, _single_model), (piped, _pipeline_model)):
        if np.any(mask):
            i = np.flatnonzero(mask)
            for name, value in model(tables, kind[i], lam[i], P, O, percentile, cv2).items():
                out[name][i] = value
    return out


def _single_model(tables: StepTables, kind, lam, P: float, O: float, percentile: float, cv2: float):
    """``_model`` for one server stepping every batch (see the module docstring); chunked prefill here
    has one lane."""
    steps = max(O - 1.0, 0.0)
    step_k = steps / tables.tokens_per_step[kind]
    u, tau, delta, free = _steady(tables, kind, lam, step_k)
    ok = np.isfinite(u)
    u1 = np.where(ok, u, 1.0)
    B = u1 - 1.0
    k = tables.tokens_per_step[kind]
    d = tables.derived()
    chunked = tables.chunk_tokens[kind] > 0
    s_p = tables.prefill_s[kind]
    p50, pct, mean = (np.full(lam.size, np.inf) for _ in range(3))
    extra = [np.zeros(lam.size) for _ in range(3)]  # decode time the prefill left behind adds: mean, p50, pct
    on = ok & chunked
    if np.any(on):
        i = np.flatnonzero(on)
        kk = kind[i]
        b = B[i]
        t_d, xc, xt = _step_parts(tables, kk, np.maximum(b, 1.0))
        T = tables.budget_tokens[kk]
        (q50, qp), m, q = chunked_ttft(lam[i], t_d, xc, xt, np.maximum(tables.chunk_tokens[kk], 1.0), T,
                                       T - b * k[i], tables.new_prompt_tokens[kk], s_p[i], b,
                                       [0.5, percentile], cv2)
        bad = np.where(q["rho"] < 1.0, 0.0, np.inf)
        p50[i], pct[i], mean[i] = q50 + bad, qp + bad, m + bad
        # A request starts decoding as its prefill ends, when the prompts left behind are prefilled in
        # full steps: more than a random start sees. Left behind by an M/G/1 departure is rho S (1 - cv2) / 2
        # more work than at a random time (departures see the arrivals' queue length), which keeps
        # the steps full 1 / (1 - rho) as long, each costing its decodes 1 - t_d / tau_f of the time.
        rho_q = np.clip(q["phi"], 0.0, 1.0 - 1e-9)
        work = rho_q * q["a"] * q["tau_f"] * max(1.0 - cv2, 0.0) / 2.0
        scale = np.maximum(1.0 - t_d / q["tau_f"], 0.0) / np.maximum(free[i], 1e-12)
        excess = work / (1.0 - rho_q)  # mean busy time it adds; 0 w.p. 1 - rho_q, else exponential
        for e, value in zip(extra, (excess, _wait_percentile(excess, rho_q, 0.5), _wait_percentile(excess, rho_q, percentile))):
            e[i] = value * scale
    off = ok & ~chunked
    if np.any(off):  # prefill-first: M/G/1 of whole prompts between decode steps
        i = np.flatnonzero(off)
        rho = lam[i] * s_p[i]
        mean_wait = _mean_wait(rho, s_p[i], cv2)
        residual = (1.0 - np.exp(-B[i])) * (1.0 - rho) * _interp(d, "d", kind[i], _lane_batch(tables, kind[i], u1[i])) / 2.0
        bad = np.where(rho < 1.0, 0.0, np.inf)
        p50[i] = residual + s_p[i] + _wait_percentile(mean_wait, rho, 0.5) + bad
        pct[i] = residual + _mixture_quantile(percentile, 0.0, s_p[i], s_p[i], mean_wait, rho) + bad
        mean[i] = residual + mean_wait + s_p[i] + bad
    # the running batch follows the mean TPOT (Little): u = 1 + lambda (O - 1) (tau / k + extra / (O - 1))
    per_token = 1.0 / max(O - 1.0, 1.0)
    for _ in range(3):
        step = _interp(d, "d", kind, _lane_batch(tables, kind, u1))
        u1 = np.where(ok, 1.0 + lam * step_k * (step / np.maximum(free, 1e-12) + k * extra[0] * per_token), 1.0)
    tau = np.where(ok, _interp(d, "d", kind, _lane_batch(tables, kind, u1)) / np.maximum(free, 1e-12), np.inf)
    B = u1 - 1.0
    tpot = np.where(ok, tau / k, np.inf)
    z = float(ndtri(percentile))
    spread = np.sqrt(lam * np.maximum(step_k * np.where(ok, tau, 0.0), 0.0) * delta**2) / max(O - 1.0, 1.0)
    return {"u": np.where(ok, u1, np.inf), "tpot": tpot + extra[1] * per_token,
            "tpot_pct": tpot + extra[2] * per_token + max(z, 0.0) * spread,
            "prefill_fraction": np.where(ok, np.minimum(lam * delta, 1.0), 1.0),
            "busy": np.where(ok, 1.0 - np.exp(-B), 1.0), "ttft_p50": p50, "ttft_pct": pct, "ttft_mean": mean}


def _curves(tables: StepTables, P: float, O: float, percentile: float, cv2: float) -> dict[str, np.ndarray]:
    """``_model`` per kind (rows) over a grid of lambda (columns) up to the kind's largest capacity
    ``top``, and the capacities at the batch grid ``lam`` (cached per table and workload)."""
    key = (P, O, percentile, cv2)
    if key not in tables._curves:
        K, G = tables.kinds, LOAD_POINTS
        lam_grid = _capacities(tables, O)
        top = np.maximum(lam_grid.max(axis=1), 1e-300)
        s = 1.0 - (1.0 - np.arange(G) / G) ** 2
        lam = (top[:, None] * np.maximum(s, 1e-6)[None, :]).ravel()
        out = {name: v.reshape(K, G) for name, v in
               _model(tables, np.repeat(np.arange(K), G), lam, P, O, percentile, cv2).items()}
        tables._curves[key] = out | {"lam": lam_grid, "top": top}
    return tables._curves[key]


def _along(curves: dict, names, kind, s):
    """Curves ``names`` at load fractions ``s`` of each kind's top rate (linear between grid points)."""
    G = LOAD_POINTS
    g = np.clip(np.floor(G * (1.0 - np.sqrt(np.clip(1.0 - s, 0.0, 1.0)))), 0, G - 2).astype(np.int64)
    s0 = 1.0 - (1.0 - g / G) ** 2
    s1 = 1.0 - (1.0 - (g + 1) / G) ** 2
    w = np.clip((s - s0) / (s1 - s0), 0.0, 1.0)
    i = kind * G + g
    out = {}
    for name in names:
        v = curves[name].ravel()
        lo, hi = v[i], v[i + 1]
        both = np.isfinite(lo) & np.isfinite(hi)
        lo_f, hi_f = np.where(both, lo, 0.0), np.where(both, hi, 0.0)
        out[name] = np.where(both, lo_f + w * (hi_f - lo_f), np.where(w <= 0.0, lo, np.inf))
    return out


def colocated(tables: StepTables, kind, replicas, max_batch, rate, prompt_len, output_len, *,
              percentile: float = 0.9, prompt_cv2: float = 0.0) -> dict[str, np.ndarray]:
    """Steady state of ``replicas`` identical replicas of ``kind`` behind a balanced router, all
    arguments broadcasting over a configuration axis. Times in seconds; ``saturated`` where no steady
    state exists (latencies inf there)."""
    kind, replicas, max_batch, rate = np.broadcast_arrays(np.asarray(kind, dtype=np.int64), np.asarray(replicas, float),
                                                         np.asarray(max_batch, float), np.asarray(rate, float))
    P, O = float(prompt_len), float(output_len)
    lanes = tables.lane_count()[kind]
    lam = rate / replicas
    cap = np.maximum(np.minimum(max_batch, tables.kv_capacity[kind] / lanes), 0.0)  # per lane batch
    names = ("u", "tpot", "tpot_pct", "ttft_p50", "ttft_pct", "ttft_mean", "prefill_fraction", "busy")
    if kind.size <= EXACT_POINTS:  # few configurations: the model at their own rates and caps
        lam_max = _capacity(tables, kind, cap, max(O - 1.0, 0.0) / tables.tokens_per_step[kind])
        pairs, back = np.unique(np.stack([kind.ravel().astype(float), lam.ravel()]), axis=1, return_inverse=True)
        one = _model(tables, pairs[0].astype(np.int64), pairs[1], P, O, float(percentile), float(prompt_cv2))
        at = {name: one[name][back.ravel()].reshape(kind.shape) for name in names}
        beyond = np.zeros(kind.shape, dtype=bool)
    else:  # the per-kind curves, linear in lambda and in the cap between their grid points
        curves = _curves(tables, P, O, float(percentile), float(prompt_cv2))
        j = _segment(np.maximum(cap, 1.0))
        row = curves["lam"].ravel()
        i = kind * BATCH_GRID.size + j
        w = np.clip((np.maximum(cap, 1.0) - BATCH_GRID[j]) / (BATCH_GRID[j + 1] - BATCH_GRID[j]), 0.0, None)
        lam_max = np.where(cap >= 1.0, np.minimum(row[i] + w * (row[i + 1] - row[i]), curves["top"][kind]), 0.0)
        s = lam / curves["top"][kind]
        at = _along(curves, names, kind, s)
        beyond = s >= 1.0 - 1.0 / LOAD_POINTS**2
    load = np.where(lam_max > 0, lam / np.maximum(lam_max, 1e-300), np.inf)
    saturated = (load >= 1.0) | beyond | ~np.isfinite(at["u"]) | ~np.isfinite(at["ttft_p50"])
    inf = np.where(saturated, np.inf, 0.0)
    prefill_fraction = np.where(saturated, 1.0, at["prefill_fraction"])
    return {
        "rate_per_replica": rate / replicas,
        "capacity_req_per_s": lam_max * replicas,
        "load": load,
        "saturated": saturated,
        "batch_mean": np.where(saturated, lanes * cap, at["u"] - 1.0),
        "ttft_p50_s": at["ttft_p50"] + inf,
        "ttft_pct_s": at["ttft_pct"] + inf,
        "ttft_mean_s": at["ttft_mean"] + inf,
        "tpot_p50_s": at["tpot"] + inf,
        "tpot_pct_s": at["tpot_pct"] + inf,
        "throughput_tokens_per_s": np.where(saturated, lam_max * replicas, rate) * (P + O),
        "prefill_fraction": prefill_fraction,
        "decode_fraction": np.where(saturated, 0.0, at["busy"] * (1.0 - prefill_fraction)),
    }


__all__ = ["colocated"]
