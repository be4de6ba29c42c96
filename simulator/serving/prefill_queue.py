"""Time to first token under chunked prefill: the queue of prompt tokens that engine steps serve.

A replica with chunked prefill (vLLM V1, Sarathi-Serve arXiv 2403.02310) runs one step after another;
each step carries the B running decodes and up to c = T - B k prompt tokens (T = max_num_batched_tokens,
k tokens per decode), taken first come first served from the prompts that have arrived. A step that
carries n prompt tokens lasts tau(n) = t_d + X(n): the decode step plus the prompt tokens' extra time,
piecewise linear in n through the step model's points X(C) and X(T) (C = one prompt's chunk). In units
of the step's prompt capacity a prompt is a = P / c steps of work.

The tagged request arrives during a step (length-biased: long steps are hit more often) at a uniform
point, so R, the rest of that step, is uniform on [0, tau_cur]; it waits for the step to end. With V the
prompt work (in step units) scheduled ahead of it when the next step forms, its last token is in step
N = ceil(V + a) after that; the steps before are full (tau_f = tau(c)), the last carries r = V + a - (N - 1)
of its own and the earlier prompts' work plus that of the prompts that have arrived behind it by then
(A' of them, Poisson), so

    TTFT = R + (N - 1) tau_f + tau(min(1, r + a A')).                                            (1)

What V is depends on the step in progress:

* **open** (not full: it holds K prompts, a K < 1). Prompts arrive into the next step at Poisson rate
  lambda, so the step after one of K prompts holds Poisson(lambda tau(a K)) prompts: a Markov chain on K
  (the gated bulk-service queue of Bailey 1954, "On queueing processes with bulk service", J. R. Stat.
  Soc. B 16; Yang et al. 2024 arXiv 2407.05347 call it dynamic batching), whose quasi-stationary law over
  open steps is found by power iteration. Then V = a A_b with A_b the prompts that arrived earlier in the
  current step.
* **full** (its prompt tokens fill the budget). Work spills into the next steps:
  - a < 1 (several prompts fit one step; a step fills only when arrivals overflow it): the spill L is
    taken as exponential with the Cramer-Lundberg decay theta of the step queue L' = (L + a A - 1)^+,
    A ~ Poisson(lambda tau_f): lambda tau_f (e^{theta a} - 1) = theta, solved in closed form with the
    Lambert W function (theta a = -W_{-1}(-rho e^{-rho}) - rho, rho = lambda a tau_f); Kingman's
    heavy-traffic exponential (Kingman 1962) is its limit as rho -> 1. V = L + a A_b. The share of
    full steps phi solves phi = (1 - phi) p_o + phi p_f with p_o, p_f the probabilities that an open or
    a full step is followed by a full one.
  - a >= 1 (every prompt fills steps on its own): prompts queue as in an M/D/1 queue of service
    a tau_f (rho = lambda a tau_f of the time the steps are full). V = H + a N_q: H = a - h, the rest of
    the prompt in progress after its h-th full step (h uniform over its floor(a) full steps), and N_q
    the prompts waiting, with P(N_q >= 1) = 1 - (1 - rho)(e^rho - 1)/rho (M/D/1 queue-length law,
    P(N = 1) = (1 - rho)(e^rho - 1); Gross & Harris, Fundamentals of Queueing Theory, the M/D/1 queue) and a
    geometric tail of ratio e^{-theta a} (the same decay).
* **idle** (no decodes running, probability e^{-B} of the open decode-only time: the running count is
  Poisson(B), the M/G/inf property): the prompt is prefilled alone, TTFT = S_p.

Arrivals ahead (A_b) and behind (A') are Poisson with their means at the middle of the current step
(R's coupling to them is dropped). Prompt-length variability (squared coefficient cv2) stretches the
queue's exponential tail by 1 + cv2, as Kingman's G/G/1 approximation scales the wait. Every branch of
(1) is a ramp of width tau_cur from its D = (N - 1) tau_f + tau(fill), so the CDF of TTFT is piecewise
linear; its quantiles are found exactly by sorting the ramps' ends. The derivation and the check
against the simulation are in docs/serving.md.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammainc, lambertw

J_OPEN = 6  # open steps of 0..J_OPEN prompts (an open step of more is beyond the chain)
J_ARR = 6  # arrivals ahead / behind: 0..J_ARR - 1 and a last node for J_ARR or more
N_NODES = 6  # equal-probability nodes of the exponential spill and the geometric queue
H_MAX = 4  # head-prompt remainders enumerated (more full steps per prompt: equal-probability nodes)


def _pois(mean: np.ndarray, n: int) -> np.ndarray:
    """P(X = j), j = 0..n-2, and P(X >= n - 1) for X ~ Poisson(mean); shape mean.shape + (n,)."""
    mean = np.asarray(mean, dtype=float)[..., None]
    j = np.arange(n - 1, dtype=float)
    logf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n - 1, dtype=float)))])
    pmf = np.exp(j * np.log(np.maximum(mean, 1e-300)) - mean - logf)
    pmf = np.where(mean > 0, pmf, (j == 0).astype(float))
    tail = np.clip(1.0 - pmf.sum(axis=-1, keepdims=True), 0.0, 1.0)
    return np.concatenate([pmf, tail], axis=-1)


def _sf(mean: np.ndarray, k: np.ndarray) -> np.ndarray:
    """P(X > k) for X ~ Poisson(mean), k >= 0 integer: the regularised lower gamma P(k + 1, mean)."""
    return np.where(mean > 0, gammainc(k + 1.0, np.maximum(mean, 1e-300)), 0.0)


def spill_decay(rho: np.ndarray) -> np.ndarray:
    """y = theta a > 0 with e^y - 1 = y / rho (the step queue's Cramer-Lundberg exponent), rho in (0, 1)."""
    r = np.clip(rho, 1e-12, 1.0 - 1e-12)
    return np.where(rho < 1.0, -lambertw(-r * np.exp(-r), k=-1).real - r, 0.0)


def _quantiles(starts, widths, weights, ps) -> list[np.ndarray]:
    """Quantiles of a mixture of uniform ramps (start, width, weight) per row: the CDF is piecewise
    linear between the sorted ends of the ramps."""
    widths = np.maximum(widths, 1e-12)
    rows, cols = starts.shape[0], 2 * starts.shape[1]
    ends = np.concatenate([starts, starts + widths], axis=1)
    dslope = np.concatenate([weights / widths, -weights / widths], axis=1)
    flat = (np.argsort(ends, axis=1) + (np.arange(rows) * cols)[:, None]).ravel()
    x = ends.ravel()[flat].reshape(rows, cols)
    slope = np.cumsum(dslope.ravel()[flat].reshape(rows, cols), axis=1)
    cdf = np.zeros((rows, cols))
    np.cumsum(slope[:, :-1] * np.diff(x, axis=1), axis=1, out=cdf[:, 1:])
    out = []
    for p in ps:
        target = p * cdf[:, -1]
        i = np.clip((cdf < target[:, None]).sum(axis=1) - 1, 0, cols - 1) + np.arange(rows) * cols
        x0, f0, s = x.ravel()[i], cdf.ravel()[i], slope.ravel()[i]
        out.append(x0 + np.where(s > 0, (target - f0) / np.where(s > 0, s, 1.0), 0.0))
    return out


def ttft(lam, t_d, x_chunk, x_full, chunk, budget, capacity, prompt, prefill_alone, batch, ps, cv2=0.0):
    """TTFT quantiles (one array per p in ``ps``) and mean under chunked prefill, element-wise over
    points: arrival rate ``lam``, decode step ``t_d``, prompt-token extra time ``x_chunk`` at ``chunk``
    tokens and ``x_full`` at ``budget`` tokens, prompt tokens per step ``capacity`` (c), new prompt
    tokens ``prompt``, a prompt prefilled alone ``prefill_alone``, mean running decodes ``batch``.
    Also returns ``rho`` (lambda a tau_f:
    the prefill queue is stable below 1), ``phi`` (the share of time in full steps), ``a`` and ``tau_f``."""
    lam, t_d, xc, xt, C, T, c, P, s_p, B = (np.asarray(v, dtype=float).ravel() for v in np.broadcast_arrays(
        lam, t_d, x_chunk, x_full, chunk, budget, capacity, prompt, prefill_alone, batch))
    n = lam.size
    c = np.maximum(c, 1.0)
    s1 = xc / np.maximum(C, 1.0)
    s2 = np.where(T > C, (xt - xc) / np.maximum(T - C, 1.0), s1)

    def col(v, like):  # per-point values against an (n, ...) array
        return v.reshape((n,) + (1,) * (np.ndim(like) - 1))

    def tau(fill):  # a step carrying fill * c prompt tokens, fill (n, ...) in [0, 1]
        tokens = np.minimum(fill, 1.0) * col(c, fill)
        cc = col(C, fill)
        return col(t_d, fill) + col(s1, fill) * np.minimum(tokens, cc) + col(s2, fill) * np.maximum(tokens - cc, 0.0)

    a = P / c
    tau_f = tau(np.ones(n))
    rho = lam * a * tau_f
    y = spill_decay(rho) / (1.0 + cv2)  # theta a, the tail stretched by prompt-length variability
    small = a < 1.0
    k_open = np.where(small, np.ceil(1.0 / np.maximum(a, 1e-12)) - 1.0, 0.0)  # most prompts of an open step

    # Poisson nodes enough for the largest mean arrivals per step (tau_f is the longest step)
    most = float(np.max(lam * tau_f, initial=0.0))
    enough = int(np.ceil(most + 5.0 * np.sqrt(most) + 2.0))
    # open steps: the chain K -> Poisson(lam tau(a K)), restricted to a K < 1
    jo = int(min(J_OPEN, k_open.max(initial=0.0), enough))
    K = np.arange(jo + 1, dtype=float)
    tau_k = tau(a[:, None] * K[None, :])  # (n, jo + 1)
    allowed = K[None, :] <= k_open[:, None]
    trans = _pois(lam[:, None] * tau_k, jo + 2)[:, :, : jo + 1] * allowed[:, None, :]  # (n, from, to)
    pi = allowed / allowed.sum(axis=1, keepdims=True)
    for _ in range(16):
        pi = np.einsum("nk,nkj->nj", pi, trans)
        pi = pi / np.maximum(pi.sum(axis=1, keepdims=True), 1e-300)
    time_k = pi * tau_k
    share_k = time_k / np.maximum(time_k.sum(axis=1, keepdims=True), 1e-300)
    tau_open = time_k.sum(axis=1)
    p_open = (pi * _sf(lam[:, None] * tau_k, k_open[:, None])).sum(axis=1)
    # a full step is followed by a full one when its spill L plus a A (A arrivals during it) reach 1:
    # sum_{a j < 1} P(A = j) e^{-theta (1 - a j)} + P(a A >= 1)
    jp = int(min(64.0, k_open.max(initial=0.0))) + 1
    jj = np.arange(jp, dtype=float)
    pmf = _pois(lam * tau_f, jp + 1)[:, :-1]
    theta = y / np.maximum(a, 1e-12)
    stay = np.exp(-theta[:, None] * np.maximum(1.0 - a[:, None] * jj[None, :], 0.0)) * (jj[None, :] <= k_open[:, None])
    p_full = np.clip((pmf * stay).sum(axis=1) + _sf(lam * tau_f, k_open), 0.0, 1.0)
    phi_steps = p_open / np.maximum(1.0 - p_full + p_open, 1e-12)
    phi_small = phi_steps * tau_f / np.maximum(phi_steps * tau_f + (1.0 - phi_steps) * tau_open, 1e-300)
    phi = np.clip(np.where(small, phi_small, rho), 0.0, 1.0)
    idle = (1.0 - phi) * share_k[:, 0] * np.exp(-B)

    nb = min(J_ARR, enough) + 1 if np.any(small) else 2  # behind: with a >= 1 any arrival fills the last step
    starts, widths, weights = [], [], []

    def branch(v, tau_cur, w):
        """Ramps of (1): work ahead v (n, m) with weights w (n, m), the current step tau_cur (n, m)."""
        N = np.ceil(v + a[:, None] - 1e-9)
        r = v + a[:, None] - (N - 1.0)
        behind = _pois(lam[:, None] * (tau_cur / 2.0 + (N - 1.0) * tau_f[:, None]), nb)  # (n, m, nb)
        fill = np.minimum(1.0, r[..., None] + a[:, None, None] * np.arange(nb, dtype=float))
        D = (N[..., None] - 1.0) * tau_f[:, None, None] + tau(fill)
        starts.append(D.reshape(n, -1))
        widths.append(np.broadcast_to(tau_cur[..., None], D.shape).reshape(n, -1))
        weights.append((w[..., None] * behind).reshape(n, -1))

    na = min(J_ARR, enough) + 1
    jv = np.arange(na, dtype=float)
    ahead = _pois(lam[:, None] * tau_k / 2.0, na)  # (n, K, na): prompts ahead in the current step
    w_open = ((1.0 - phi)[:, None] * share_k - np.where(K[None, :] == 0, idle[:, None], 0.0))[:, :, None] * ahead
    v_open = np.broadcast_to(a[:, None, None] * jv, ahead.shape)
    branch(v_open.reshape(n, -1), np.repeat(tau_k, na, axis=1), w_open.reshape(n, -1))
    u = (np.arange(N_NODES) + 0.5) / N_NODES
    if np.any(small & (phi > 0)):  # full step, a < 1: V = L + a A_b, L exponential of rate theta
        L = -np.log1p(-u)[None, :] / np.maximum(theta, 1e-300)[:, None]
        v = L[:, :, None] + (a[:, None] * jv[None, :])[:, None, :]  # (n, N_NODES, na)
        w = (np.where(small, phi, 0.0) / N_NODES)[:, None, None] * _pois(lam * tau_f / 2.0, na)[:, None, :] \
            * np.ones_like(v)
        branch(v.reshape(n, -1), np.repeat(tau_f[:, None], v[0].size, axis=1), w.reshape(n, -1))
    if np.any(~small & (phi > 0)):  # full step, a >= 1: V = H + a N_q
        floor_a = np.floor(np.maximum(a, 1.0))
        ell = np.arange(H_MAX, dtype=float)
        few = floor_a[:, None] <= H_MAX
        h = np.where(few, ell[None, :] + 1.0, 1.0 + np.floor((ell[None, :] + 0.5) * floor_a[:, None] / H_MAX))
        w_h = np.where(few, (ell[None, :] < floor_a[:, None]) / floor_a[:, None], 1.0 / H_MAX)
        H = np.maximum(a[:, None] - h, 0.0)
        r = np.clip(rho, 1e-12, 1.0 - 1e-12)
        waiting = np.where(rho > 0, 1.0 - (1.0 - r) * np.expm1(r) / r, 0.0)  # M/D/1: P(N >= 2 | N >= 1)
        log_beta = -np.maximum(y, 1e-12)  # queue-length ratio e^{-theta a}
        g = np.floor(np.log1p(-u)[None, :] / log_beta[:, None])
        nq = np.concatenate([np.zeros((n, 1)), 1.0 + g], axis=1)  # (n, 1 + N_NODES)
        w_q = np.concatenate([(1.0 - waiting)[:, None], np.repeat((waiting / N_NODES)[:, None], N_NODES, axis=1)],
                             axis=1)
        v = H[:, :, None] + a[:, None, None] * nq[:, None, :]
        w = np.where(small, 0.0, phi)[:, None, None] * w_h[:, :, None] * w_q[:, None, :]
        branch(v.reshape(n, -1), np.repeat(tau_f[:, None], v[0].size, axis=1), w.reshape(n, -1))
    starts.append(s_p[:, None])  # idle: the prompt is prefilled alone at once
    widths.append(np.full((n, 1), 1e-9))
    weights.append(idle[:, None])
    S, W, Wt = (np.concatenate(v, axis=1) for v in (starts, widths, weights))
    Wt = np.maximum(Wt, 0.0)
    keep = np.flatnonzero(Wt.max(axis=0) > 1e-12)  # branches no point reaches
    S, W, Wt = S[:, keep], W[:, keep], Wt[:, keep]
    mean = (Wt * (S + W / 2.0)).sum(axis=1) / np.maximum(Wt.sum(axis=1), 1e-300)
    return _quantiles(S, W, Wt, ps), mean, {"rho": rho, "phi": phi, "a": a, "tau_f": tau_f}


__all__ = ["spill_decay", "ttft"]
