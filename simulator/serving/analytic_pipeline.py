"""The analytical fast path of a pipeline-parallel replica under chunked prefill (``StepTables.lanes``):
a pp-stage replica keeps pp batches in flight (vLLM V1's batch queue, ``EngineCore.step_with_batch_queue``;
``simulator.serving.lanes``), each scheduled on its own budgets and taking one trip through all stages;
its tables then hold one batch's trip. ``simulator.serving.pipeline_queue`` gives the mean cycle (a
lane's period: the longest trip of its p batches, over a Markov chain of cycles), TTFT and the
capacity; the running batch solves B = lambda (O - 1) E[C] / k with each lane's batch 1 + B / p
(``_pipeline_steady``), as the capacity solves its own fixed point, both by the Illinois variant of
regula falsi. Under prefill-first scheduling the replica is one server whose decode step is a lane
batch's trip (``simulator.serving.analytic``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from simulator.serving import pipeline_queue as pq
from simulator.serving.analytic_tables import BATCH_GRID, StepTables, _step_parts
from simulator.serving.mg1 import _wait_percentile


def _piped(tables: StepTables, kind) -> np.ndarray:
    """Points served by a pipeline's lanes with chunked prefill (``simulator.serving.pipeline_queue``)."""
    return (tables.lane_count()[kind] > 1) & (tables.chunk_tokens[kind] > 0)


def _lane_parts(tables: StepTables, kind, v):
    """A lane's batch of v sequences: its decode trip t_d, the prompt tokens' slopes s1 and s2 below and
    above one prompt's chunk, and the prompt tokens it has room for."""
    t_d, xc, xt = _step_parts(tables, kind, v)
    C = np.maximum(tables.chunk_tokens[kind], 1.0)
    T = tables.budget_tokens[kind]
    s1 = xc / C
    s2 = np.where(T > C, (xt - xc) / np.maximum(T - C, 1.0), s1)
    return t_d, s1, s2, np.maximum(T - (v - 1.0) * tables.tokens_per_step[kind], 1.0)


SECANT_STEPS = 6  # Illinois steps of the pipeline's fixed points


def _illinois(f, lo, hi, f_lo, f_hi, live):
    """The root of an increasing f between lo (f < 0 ... or > 0) and hi by the Illinois variant of
    regula falsi (element-wise where ``live``; f(lo) and f(hi) of opposite signs)."""
    side = np.zeros(np.shape(lo))
    for _ in range(SECANT_STEPS):
        x = np.where(live, hi - f_hi * (hi - lo) / np.where(f_hi != f_lo, f_hi - f_lo, -1.0), lo)
        g = f(x)
        right = (g < 0) == (f_hi < 0)  # x replaces the end whose sign it shares
        hi, f_hi = np.where(right, x, hi), np.where(right, g, f_hi)
        lo, f_lo = np.where(right, lo, x), np.where(right, f_lo, g)
        f_lo = np.where(right & (side > 0), f_lo / 2.0, f_lo)  # Illinois: halve the stale end
        f_hi = np.where(~right & (side < 0), f_hi / 2.0, f_hi)
        side = np.where(right, 1.0, -1.0)
    return hi - f_hi * (hi - lo) / np.where(f_hi != f_lo, f_hi - f_lo, -1.0)


def _pipeline_capacity(tables: StepTables, kind, M, run, even):
    """Requests/s of a pipeline whose lanes run M sequences each: lambda with lambda run E[C](lambda) = p M,
    E[C] the mean cycle of batches filled by Poisson arrivals (``pipeline_queue``), below ``even`` (every
    batch alike) and the rate at which full cycles just serve the prompts (lambda a C_full / p = 1)."""
    p = tables.lane_count()[kind]
    chains = pq.Chains(p, np.maximum(tables.chunk_tokens[kind], 1.0), np.maximum(tables.new_prompt_tokens[kind], 1.0))
    t_d, s1, s2, c = _lane_parts(tables, kind, M)
    full = t_d + pq.extra_s(s1, s2, np.maximum(tables.chunk_tokens[kind], 1.0), c)
    top = np.minimum(even, p * c / (np.maximum(tables.new_prompt_tokens[kind], 1.0) * full))

    def excess(lam):
        return lam * run * chains.mean(lam, t_d, s1, s2, c) - p * M

    hi = top * (1.0 - 1e-9)
    f_hi = excess(hi)
    live = f_hi > 0
    lo = np.zeros_like(hi)
    return np.where(live, _illinois(excess, lo, hi, -p * M, f_hi, live), hi)


def _pipeline_steady(tables: StepTables, kind, lam, steps):
    """The pipeline's steady state: the mean cycle tau solves tau = E[C] at the lane batch
    v = 1 + lambda steps tau / p (Little's law over the lanes), found by the Illinois variant of regula
    falsi between tau = t_d(1) and the tau that fills the budget with decodes; none (inf) where E[C]
    stays above tau there or the prompt queue is unstable. Returns u, tau, Delta, 1 - lambda Delta, and
    the chains and laws for TTFT."""
    p = tables.lane_count()[kind]
    k = tables.tokens_per_step[kind]
    chains = pq.Chains(p, np.maximum(tables.chunk_tokens[kind], 1.0), np.maximum(tables.new_prompt_tokens[kind], 1.0))
    top = np.minimum(BATCH_GRID[-1], 1.0 + (tables.budget_tokens[kind] - 1.0) / k)
    rate = lam * steps / p  # lane batch per second of cycle: v = 1 + rate tau

    def lane(tau):
        return np.minimum(1.0 + rate * tau, top)

    def gap(tau):
        t_d, s1, s2, c = _lane_parts(tables, kind, lane(tau))
        return chains.mean(lam, t_d, s1, s2, c) - tau

    lo = _lane_parts(tables, kind, np.ones_like(lam))[0]
    hi = np.where(rate > 0, (top - 1.0) / np.maximum(rate, 1e-300), lo)
    g_lo, g_hi = gap(lo), gap(hi)
    ok = (rate <= 0) | (g_hi < 0)
    tau = np.where(rate > 0, lo, g_lo + lo)
    if np.any(ok & (rate > 0)):
        tau = np.where(rate > 0, _illinois(gap, lo, hi, g_lo, g_hi, ok & (rate > 0)), tau)
    v = lane(tau)
    t_d, s1, s2, c = _lane_parts(tables, kind, v)
    solved = chains.solve(lam, t_d, s1, s2, c)
    tau = np.where(rate > 0, pq.mean_cycle(solved, lam.size), tau)
    ok &= ~pq.unstable(chains, lam, t_d, c) & np.isfinite(tau)
    free = np.where(ok, t_d / np.where(ok, tau, 1.0), 0.0)
    delta = (1.0 - free) / np.maximum(lam, 1e-300)
    u = np.where(ok, 1.0 + p * (v - 1.0), np.inf)
    return u, np.where(ok, tau, np.inf), delta, free, (chains, solved, t_d, c)


def _pipeline_model(tables: StepTables, kind, lam, P: float, O: float, percentile: float, cv2: float):
    """``analytic._model`` for a pipeline's lanes under chunked prefill (``pipeline_queue``): TPOT the mean
    cycle, its percentile with the compound-Poisson spread of the prompts a request overlaps; TTFT from the
    chains' laws. Prompt-length variability is not followed here (fixed lengths)."""
    steps = max(O - 1.0, 0.0)
    k = tables.tokens_per_step[kind]
    u, tau, delta, free, (chains, solved, t_d, c) = _pipeline_steady(tables, kind, lam, steps / k)
    ok = np.isfinite(u)
    (q50, qp), mean = pq.ttft(chains, solved, lam, t_d, c, [0.5, percentile])
    bad = np.where(ok, 0.0, np.inf)
    # the decode a request's prefill leaves behind: 0 unless its first cycles carry prompts, else
    # exponential (as for one server)
    excess, hit = pq.left_behind(chains, solved, lam)
    excess, hit = np.where(ok, np.maximum(excess, 0.0), 0.0), np.clip(hit, 1e-9, 1.0 - 1e-9)
    per_token = 1.0 / max(O - 1.0, 1.0)
    tpot = tau / k
    z = float(ndtri(percentile))
    spread = np.sqrt(lam * np.maximum(steps / k * np.where(ok, tau, 0.0), 0.0) * delta**2) / max(O - 1.0, 1.0)
    B = np.where(ok, u - 1.0, 0.0)
    return {"u": u, "tpot": tpot + _wait_percentile(excess, hit, 0.5) * per_token + bad,
            "tpot_pct": tpot + _wait_percentile(excess, hit, percentile) * per_token + max(z, 0.0) * spread + bad,
            "prefill_fraction": np.where(ok, np.minimum(lam * delta, 1.0), 1.0),
            "busy": np.where(ok, 1.0 - np.exp(-B), 1.0), "ttft_p50": q50 + bad, "ttft_pct": qp + bad,
            "ttft_mean": mean + bad}
