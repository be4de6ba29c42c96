"""The queue of a pipeline-parallel replica for the fast path: p lanes of batches in flight
(``simulator.serving.lanes``) sharing one waiting queue, each batch one trip through the p stages.

**The cycle.** A lane's batch of trip t (the step model's time for one micro-batch through all stages)
occupies each stage t / p, and a lane's next batch enters stage 1 only after its last one left stage p.
With every lane ready this is a flow shop whose jobs take the same time on every machine (a
proportionate flow shop), in which a run of jobs takes the sum of their times plus (m - 1) times the
longest (Pinedo, Scheduling: Theory, Algorithms, and Systems, 5th ed. 2016, section 6.1): the p batches
of a cycle take as long as the longest one's trip, so a lane's period, the time between its tokens, is
the cycle C = t_d + max_l X(n_l) over the lanes' prompt tokens n_l (t_d the decode trip, X the prompt
tokens' extra time). Within the cycle the fullest batch's extra time X falls as X / p on the stage slot
after it enters stage 1 and (p - 1) X / p on the slot before its lane's next batch, the p - 2 slots
between taking t_d / p (``_slots``). For p = 2 the recurrence of ``lanes.Pipeline`` gives it exactly:
batch k + 1 enters max(s_k-1, s_k) after batch k (s the stage slots) and leaves s_k + max(s_k-1, s_k)
after it entered. A batch's latency through the pipe is (t + (p - 1) Y) / p behind a longer batch of
trip Y, and t when it is the longest itself.

**The cycle chain** (several prompts fit one lane's batch, a = P / c < 1 with c = T - b k the prompt
tokens a batch has room for): a cycle's lanes each carry the prompts that arrived in the stage slot
before they formed, Poisson(lambda C / p) after a cycle of length C, so the cycle's fullest lane M is a
Markov chain over cycles, M' = max of p independent Poisson(lambda C(M) / p) counts, with
C(M) = t_d + X(min(M P, c)). It is the common-environment form of the open-step chain of
``prefill_queue`` (Bailey's gated bulk service, 1954), which it equals at p = 1; the shared cycle
length is what correlates the lanes (a long cycle brings every lane more prompts).

**The busy-lane chain** (every prompt fills batches on its own, a >= 1): a prompt holds the lane that
takes it for A = ceil(a) or floor(a) batches (their mean a), each a cycle; waiting prompts take the
lanes as they free, first come first served. Embedded at cycle boundaries the state is the multiset of
the lanes' remaining batches and the waiting count: each cycle every busy lane does one batch and the
Poisson(lambda C) arrivals start on free lanes, a multi-server queue with deterministic service (the
embedded chain of Crommelin 1932, "Delay probability formulae when the holding times are constant",
P.O. Elect. Eng. J. 25, for M/D/c), with C = t_d + X(c) when any lane is busy and t_d otherwise.

Stationary laws are solved directly (a linear system per point). A decoding request sees every cycle,
so TPOT is the mean cycle (over cycles) plus what its prefill leaves behind (``left_behind``: the
chain's Poisson equation); an arrival lands in a stage slot with probability proportional to its length.

**TTFT.** A prompt waits R, uniform over the stage slot it arrives in (over the cycle when it must wait
for a lane to free), joins the batch that forms next, and its first token leaves with its last batch,
L = (t_own + (p - 1) max(t_own, Y)) / p later, Y the trip of the fullest batch ahead of it (that of the
cycle it arrived in, except in the slot before that batch's lane forms again). With a < 1 the batch holds
it and the Poisson(lambda x slot) others of its slot, first come first served up to c tokens: a prompt cut
short finishes in its lane's next batch one lane period later, one with no room waits for the next slot;
in the cycles where a batch ran full (the chain's share of time) prompts wait in the slots' step queue
of ``prefill_queue``, its spill exponential with the Cramer-Lundberg decay of rho = lambda a C_full / p.
With a >= 1 the prompt starts when a lane frees after the prompts ahead of it (the queue and the arrivals
earlier in its cycle, each holding a lane for a cycles), runs ceil(a) - 1 full batches a busy cycle each,
and its last holds the rest, full when a prompt arriving in the slot before it takes the room its tail
leaves, and behind a full batch when another lane is still on a prompt or took one in its slot. Every
branch is a uniform ramp of R from its deterministic part, so the quantiles are exact for that law
(``prefill_queue._quantiles``).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from math import comb

import numpy as np
from scipy import sparse
from scipy.special import gammaincc

from simulator.serving.prefill_queue import N_NODES, _pois, _quantiles, spill_decay

J_LANE = 8  # prompts per lane batch the cycle chain follows (the last state: that many or more)
Q_MAX = 6  # waiting prompts the busy-lane chain follows
A_MAX = 4  # batches per prompt the busy-lane chain follows (a longer prompt: A_MAX steps of a / A_MAX cycles)
J_ARR = 8  # arrivals per cycle: 0 .. J_ARR - 2 and a last node for more
J_AHEAD = 6  # prompts ahead of a tagged arrival in its cycle


def extra_s(s1, s2, chunk, tokens):
    """X(n): the extra trip time of n prompt tokens, slope s1 up to one prompt's chunk, s2 above."""
    return s1 * np.minimum(tokens, chunk) + s2 * np.maximum(tokens - chunk, 0.0)


# --- the cycle chain (a < 1) ----------------------------------------------------------------------

def _open_states(P, c):
    """Prompt counts 0..J of a lane's batch and their tokens, capped at the room c: (J + 1,), (n, J + 1)."""
    J = int(min(J_LANE, np.ceil(np.max(c / np.maximum(P, 1.0), initial=1.0))))
    j = np.arange(J + 1, dtype=float)
    return j, np.minimum(j[None, :] * P[:, None], c[:, None])


def _stationary(trans):
    """The stationary law of per-point chains ``trans`` (n, S, S), rows summing to one: pi (T - I) = 0
    with the probabilities summing to one, solved directly. A chain with more than one closed class has
    no unique law (a saturated busy-lane chain: every cycle's arrivals fill every lane, so the lanes'
    phases never change); such a point gets the law of the queue started empty, the chain that restarts
    from state 0 (no prompt, every lane free) with probability ``_RESTART`` per cycle."""
    try:
        return _solve_stationary(trans)
    except np.linalg.LinAlgError:
        pass
    pi = np.empty(trans.shape[:2])
    for i in range(trans.shape[0]):
        try:
            pi[i] = _solve_stationary(trans[i:i + 1])[0]
        except np.linalg.LinAlgError:
            restarted = (1.0 - _RESTART) * trans[i]
            restarted[:, 0] += _RESTART
            pi[i] = _solve_stationary(restarted[None])[0]
    return pi


_RESTART = 1e-9


def _solve_stationary(trans):
    n, S, _ = trans.shape
    A = np.swapaxes(trans, 1, 2) - np.eye(S)
    A[:, -1, :] = 1.0
    b = np.zeros((n, S, 1))
    b[:, -1, 0] = 1.0
    return np.maximum(np.linalg.solve(A, b)[:, :, 0], 0.0)


def _open_chain(lam, p, cyc):
    """Stationary law of the fullest lane M over cycles (see the module docstring): cycle ``cyc``
    (n, J + 1) by state; returns pi (n, J + 1)."""
    n, S = cyc.shape
    mu = (lam / p)[:, None] * cyc  # each lane's mean arrivals after a cycle in state M
    k = np.arange(S, dtype=float)
    cdf = np.where(k[None, None, :] < S - 1, gammaincc(k[None, None, :] + 1.0, np.maximum(mu[:, :, None], 1e-300)), 1.0)
    cdf = np.where(mu[:, :, None] > 0, cdf, 1.0)
    top = cdf ** p[:, None, None]
    trans = np.diff(np.concatenate([np.zeros((n, S, 1)), top], axis=2), axis=2)
    return _stationary(trans), trans


# --- the busy-lane chain (a >= 1) -----------------------------------------------------------------

@lru_cache(maxsize=64)
def _busy_structure(p: int, A: int):
    """States (remaining batches per lane as a sorted tuple, waiting prompts) and the transitions of
    the busy-lane chain: for each (state, arrivals j, starts on the longer length h) the next state,
    with the counts the weights need. Point-independent, cached per (p, A)."""
    residuals = sorted({tuple(sorted(r)) for r in itertools.product(range(A + 1), repeat=p)})
    states = [(r, q) for r in residuals for q in range(Q_MAX + 1)]
    index = {s: i for i, s in enumerate(states)}
    src, tgt, arr, hi, starts, coef = [], [], [], [], [], []
    for i, (r, q) in enumerate(states):
        left = [max(x - 1, 0) for x in r]
        free = sum(1 for x in left if x == 0)
        busy = [x for x in left if x > 0]
        for j in range(J_ARR):
            start = min(free, q + j)
            waiting = min(q + j - start, Q_MAX)
            for h in range(start + 1):
                new = busy + [A] * h + [max(A - 1, 1)] * (start - h)
                new = tuple(sorted(new + [0] * (p - len(new))))
                src.append(i)
                tgt.append(index[(new, waiting)])
                arr.append(j)
                hi.append(h)
                starts.append(start)
                coef.append(comb(start, h))
    busy_lanes = np.array([sum(1 for x in r if x > 0) for r, _ in states])
    free_lanes = np.array([sum(1 for x in r if x <= 1) for r, _ in states])  # free by the next cycle
    lane_free = np.array([[max(x - 1, 0) for x in r] for r, _ in states], dtype=float)
    waiting = np.array([q for _, q in states], dtype=float)
    S, E = len(states), len(tgt)
    src, tgt = np.array(src), np.array(tgt)
    # the transitions summed into the S x S matrix: one sparse map from the E weights
    onto = sparse.csr_matrix((np.ones(E), (np.arange(E), src * S + tgt)), shape=(E, S * S))
    return {"n": S, "states": states, "arrival": src * J_ARR + np.array(arr), "binom": np.array(starts) * (p + 1) + np.array(hi),
            "coef": np.array(coef, dtype=float), "onto": onto, "p": p, "busy": busy_lanes, "free": free_lanes,
            "lane_free": lane_free, "waiting": waiting}


def _busy_chain(st, lam, cyc, frac):
    """Stationary law of the busy-lane chain: per point the transition matrix from P(j arrivals in the
    source state's cycle) x P(h of the starts take the longer length), then power iteration."""
    n, S, p = lam.size, st["n"], st["p"]
    arrivals = _pois(lam[:, None] * cyc, J_ARR).reshape(n, -1)  # (n, S * J_ARR)
    k = np.arange(p + 1, dtype=float)
    f = frac[:, None, None]
    rest = k[:, None] - k[None, :]  # starts - h
    longer = np.where(k[None, None, :] > 0, f ** k[None, None, :], 1.0) * (1.0 - f) ** np.maximum(rest, 0.0)
    w = np.take(arrivals, st["arrival"], axis=1) * np.take(longer.reshape(n, -1), st["binom"], axis=1) * st["coef"]
    trans = np.asarray(w @ st["onto"]).reshape(n, S, S)
    return _stationary(trans), trans


def _scale(a):
    """Cycles per step of the busy-lane chain (1 up to A_MAX batches per prompt)."""
    return np.maximum(a / A_MAX, 1.0)


# --- both ---------------------------------------------------------------------------------------

class Chains:
    """The cycle laws of a set of points, each a lane count p, one prompt's chunk and its new prompt
    tokens P. ``solve`` finds them for an arrival rate, a decode trip t_d, prompt-token slopes s1 / s2
    below and above the chunk and a room c."""

    def __init__(self, p, chunk, prompt):
        self.p, self.chunk, self.P = (np.asarray(v, dtype=float) for v in (p, chunk, prompt))
        self.s1 = self.s2 = self.c = np.zeros(self.p.shape)

    def x(self, i, tokens):
        return extra_s(self.s1[i][:, None], self.s2[i][:, None], self.chunk[i][:, None], tokens)

    def groups(self, c):
        """Point indices of the cycle chain (a < 1) and of the busy-lane chain by (p, A = ceil(a))."""
        a = self.P / np.maximum(c, 1.0)
        out = {"open": np.flatnonzero(a < 1.0)}
        A = np.minimum(np.ceil(a - 1e-9), A_MAX).astype(int)
        for key in sorted({(int(pp), int(aa)) for pp, aa in zip(self.p[a >= 1.0], A[a >= 1.0])}):
            out[key] = np.flatnonzero((a >= 1.0) & (self.p == key[0]) & (A == key[1]))
        return out, a

    def solve(self, lam, t_d, s1, s2, c):
        """Per-point cycle states' lengths, laws and transitions: {group: (indices, cyc (m, S), pi (m, S),
        trans (m, S, S))}."""
        self.s1, self.s2, self.c = np.asarray(s1, dtype=float), np.asarray(s2, dtype=float), np.asarray(c, dtype=float)
        groups, a = self.groups(c)
        out = {}
        for key, i in groups.items():
            if i.size == 0:
                continue
            if key == "open":
                _, tokens = _open_states(self.P[i], c[i])
                cyc = t_d[i][:, None] + self.x(i, tokens)
                pi, trans = _open_chain(lam[i], self.p[i], cyc)
            else:
                st = _busy_structure(*key)
                full = t_d[i] + self.x(i, c[i][:, None])[:, 0]
                cyc = np.where(st["busy"][None, :] > 0, full[:, None], t_d[i][:, None])
                # a prompt holds its lane floor(a) or ceil(a) batches, ceil with probability a - floor(a);
                # beyond A_MAX batches each step of the chain stands for a / A_MAX cycles
                frac = np.where(np.ceil(a[i] - 1e-9) > A_MAX, 1.0, np.clip(a[i] - (key[1] - 1), 0.0, 1.0))
                pi, trans = _busy_chain(st, lam[i] * _scale(a[i]), cyc, frac)
            out[key] = (i, cyc, pi, trans)
        return out

    def mean(self, lam, t_d, s1, s2, c):
        """The mean cycle per point (over cycles: what a decoding request sees)."""
        return mean_cycle(self.solve(lam, t_d, s1, s2, c), np.size(lam))


def mean_cycle(solved, n):
    """The mean cycle per point of the laws ``solved``."""
    m = np.zeros(n)
    for i, cyc, pi, _ in solved.values():
        m[i] = (pi * cyc).sum(axis=1)
    return m


def left_behind(chains: Chains, solved, lam):
    """The decode time a request's output adds over the mean cycle, because its decode starts as its
    prefill ends: the lanes are then busier than at a random time (the prompts that arrived during its
    prefill are queued or running). With h the deviation of the cycle lengths from their mean (the
    Poisson equation (I - T) h = C - E[C], pi h = 0, Kemeny & Snell, Finite Markov Chains, ch. 4), a
    chain started in law nu adds sum_n (nu T^n - pi) C = (nu - pi) h over all its later cycles. nu is
    the state at its first decode cycle: after a cycle in which a lane finished a prompt, weighted by
    the lanes finishing (busy-lane chain), or the cycle after the one its prompt ran in, weighted by the
    prompts a cycle carries (the fullest lane's M and the others' mean; cycle chain). Returns the mean
    and the chance that a request's first decode cycle carries prompt work (nu's busy states)."""
    out, busy = np.zeros(np.size(lam)), np.zeros(np.size(lam))
    for key, (i, cyc, pi, trans) in solved.items():
        m, S = cyc.shape
        mean = (pi * cyc).sum(axis=1, keepdims=True)
        A = np.eye(S) - trans + pi[:, None, :]
        h = np.linalg.solve(A, (cyc - mean)[:, :, None])[:, :, 0]
        if key == "open":
            p = chains.p[i]
            mu = lam[i][:, None] * mean / p[:, None]  # each lane's mean arrivals
            k = np.arange(S, dtype=float)
            pmf = _pois(mu[:, 0], S)  # (m, S)
            below = np.cumsum(pmf * k, axis=1) / np.maximum(np.cumsum(pmf, axis=1), 1e-300)  # E[n | n <= M]
            carried = k[None, :] + (p[:, None] - 1.0) * below
            nu = pi * carried
            nu = np.matmul((nu / np.maximum(nu.sum(axis=1, keepdims=True), 1e-300))[:, None, :], trans)[:, 0, :]
        else:
            st = _busy_structure(*key)
            done = np.array([sum(1 for x in r if x == 1) for r, _ in st["states"]], dtype=float)
            nu = np.matmul((pi * done[None, :])[:, None, :], trans)[:, 0, :]
            nu = nu / np.maximum(nu.sum(axis=1, keepdims=True), 1e-300)
            nu = np.where((pi * done[None, :]).sum(axis=1, keepdims=True) > 0, nu, pi)
        out[i] = ((nu - pi) * h).sum(axis=1) * (_scale(chains.P[i] / np.maximum(chains.c[i], 1.0)) if key != "open" else 1.0)
        busy[i] = (nu * (cyc > np.min(cyc, axis=1, keepdims=True) * (1.0 + 1e-9))).sum(axis=1)
    return out, busy


def _lane_exit(own, ahead, p):
    """A batch's latency through the pipe: its own trip, or (t + (p - 1) Y) / p behind a longer one."""
    return (own + (p - 1.0) * np.maximum(own, ahead)) / p


def ttft(chains: Chains, solved, lam, t_d, c, ps):
    """TTFT quantiles (one array per p in ``ps``) and mean, from the laws ``solved`` (``Chains.solve``)."""
    n = np.size(lam)
    quantiles = [np.full(n, np.inf) for _ in ps]
    mean = np.full(n, np.inf)
    for key, (i, cyc, pi, _) in solved.items():
        parts = (_ttft_open if key == "open" else _ttft_busy)(chains, key, i, cyc, pi, lam[i], t_d[i], c[i])
        S, W, Wt = (np.concatenate(v, axis=1) for v in parts)
        Wt = np.maximum(Wt, 0.0)
        keep = np.flatnonzero(Wt.max(axis=0) > 1e-12)
        S, W, Wt = S[:, keep], W[:, keep], Wt[:, keep]
        for out, q in zip(quantiles, _quantiles(S, W, Wt, ps)):
            out[i] = q
        mean[i] = (Wt * (S + W / 2.0)).sum(axis=1) / np.maximum(Wt.sum(axis=1), 1e-300)
    return quantiles, mean


def _slots(cyc, t_d, p):
    """The stage slots of a cycle whose fullest batch has the extra time X = cyc - t_d over the others
    (the proportionate flow shop): stage 1 takes it for (t_d + X) / p, the p - 2 batches behind it for
    t_d / p each, and the slot before its lane's next batch waits for it to leave, (t_d + (p - 1) X) / p.
    Returns the slots (m, S, 3), how many of each (3,) per cycle, and whether the fullest batch is still
    ahead of the batch that forms at the slot's end (it is not at the last)."""
    X = cyc - t_d[:, None]
    d = t_d[:, None, None] / p[:, None, None]
    slots = d + np.stack([X, np.zeros_like(X), (p[:, None] - 1.0) * X], axis=2) / p[:, None, None]
    count = np.stack([np.ones_like(p), p - 2.0, np.ones_like(p)], axis=1)[:, None, :]
    return slots, count, np.array([True, True, False])


def _ttft_open(chains, key, i, cyc, pi, lam, t_d, c):
    """Ramps of TTFT with several prompts per batch (a < 1): (starts, widths, weights) lists of (m, .)."""
    m, S = cyc.shape
    p, P = chains.p[i], chains.P[i]
    slots, count, behind_long = _slots(cyc, t_d, p)  # (m, S, 3)
    a = P / np.maximum(c, 1.0)
    k_open = np.ceil(1.0 / np.maximum(a, 1e-12) - 1e-9) - 1.0  # the most prompts of a batch with room left
    is_open = (np.arange(S)[None, :] <= k_open[:, None]).astype(float)[:, :, None]  # cycles with no batch full
    land = pi[:, :, None] * count * slots
    total = np.maximum(land.sum(axis=(1, 2)), 1e-300)
    phi = (land * (1.0 - is_open)).sum(axis=(1, 2)) / total  # time in cycles where a batch ran full
    land = land * is_open / np.maximum((land * is_open).sum(axis=(1, 2), keepdims=True), 1e-300)
    ahead = np.where(behind_long[None, None, :], cyc[:, :, None], t_d[:, None, None])  # the fullest trip ahead
    whole = np.floor(c / np.maximum(P, 1.0) + 1e-9)  # prompts that fit whole
    others = _pois(lam[:, None, None] * slots, S)  # (m, S, 3, K): the others of its slot
    kx = np.arange(S, dtype=float)
    fits = np.minimum(kx[None, :] + 1.0, whole[:, None]) / (kx[None, :] + 1.0)  # (m, K): by its place in the slot
    cut = np.where((kx[None, :] >= whole[:, None]) & (whole[:, None] * P[:, None] < c[:, None]), 1.0, 0.0) / (kx + 1.0)
    later = np.maximum(1.0 - fits - cut, 0.0)
    starts, widths, weights = [], [], []
    own = t_d[:, None] + chains.x(i, np.minimum((kx[None, :] + 1.0) * P[:, None], c[:, None]))  # (m, K)
    L = _lane_exit(own[:, None, None, :], ahead[..., None], p[:, None, None, None])  # (m, S, 3, K)
    starts.append(L.reshape(m, -1))
    widths.append(np.broadcast_to(slots[..., None], L.shape).reshape(m, -1))
    weights.append((land[..., None] * others * fits[:, None, None, :]).reshape(m, -1))
    # cut short: the rest in its lane's next batch, one lane period after a full batch, with the
    # prompts of the slot before that batch forms
    rest = np.maximum(P - (c - whole * P), 0.0)
    full = t_d + chains.x(i, c[:, None])[:, 0]
    period = np.maximum(full[:, None], cyc)  # (m, S)
    behind = _pois(lam[:, None] * period / p[:, None], S)  # (m, S, K_b)
    trip2 = t_d[:, None] + chains.x(i, np.minimum(rest[:, None] + kx[None, :] * P[:, None], c[:, None]))  # (m, K_b)
    L2 = _lane_exit(trip2[:, None, :], cyc[:, :, None], p[:, None, None])  # (m, S, K_b)
    w_cut = (land * (others * cut[:, None, None, :]).sum(axis=3))  # (m, S, 3)
    D2 = period[:, :, None, None] + L2[:, :, None, :]  # (m, S, 1, K_b)
    starts.append(np.broadcast_to(D2, (m, S, 3, S)).reshape(m, -1))
    widths.append(np.broadcast_to(slots[..., None], (m, S, 3, S)).reshape(m, -1))
    weights.append((w_cut[..., None] * behind[:, :, None, :]).reshape(m, -1))
    # no room: the batch of the next slot
    L3 = _lane_exit(own[:, :1, None], ahead, p[:, None, None])  # (m, S, 3)
    starts.append((cyc[:, :, None] / p[:, None, None] + L3).reshape(m, -1))
    widths.append(slots.reshape(m, -1))
    weights.append((land * (others * later[:, None, None, :]).sum(axis=3)).reshape(m, -1))
    # Full batches: in a cycle where a batch ran full (the chain's share of time phi) prompts wait, and
    # every batch forms full, one per slot tau_f = C_full / p; the waiting work (in batches) is the step
    # queue of ``prefill_queue`` at the slots, its spill exponential with the Cramer-Lundberg decay of
    # rho = lambda a tau_f. The prompt's batch forms floor(V) slots on (V = spill + the prompts ahead in
    # its slot) and leaves a full batch's trip later; cut short, its rest follows one cycle on.
    tau_f = full / p
    y = spill_decay(lam * a * tau_f)
    theta = y / np.maximum(a, 1e-12)
    for w in weights:
        w *= (1.0 - phi)[:, None]
    u = (np.arange(N_NODES) + 0.5) / N_NODES
    spill = -np.log1p(-u)[None, :] / np.maximum(theta, 1e-300)[:, None]  # (m, N)
    jb = np.arange(J_AHEAD, dtype=float)
    V = spill[:, :, None] + a[:, None, None] * jb[None, None, :]  # (m, N, J)
    first = np.floor(V + 1e-9)
    cut = (V - first + a[:, None, None]) > 1.0 + 1e-9
    D = first * tau_f[:, None, None] + full[:, None, None] * (1.0 + cut)
    starts.append(D.reshape(m, -1))
    widths.append(np.broadcast_to(tau_f[:, None, None], D.shape).reshape(m, -1))
    weights.append((phi[:, None, None] / N_NODES * _pois(lam * tau_f / 2.0, J_AHEAD)[:, None, :]
                    * np.ones_like(D)).reshape(m, -1))
    return starts, widths, weights


def _ttft_busy(chains, key, i, cyc, pi, lam, t_d, c):
    """Ramps of TTFT when every prompt fills batches on its own (a >= 1)."""
    st = _busy_structure(*key)
    p_lanes, A = key
    m, S = cyc.shape
    P = chains.P[i]
    a = P / np.maximum(c, 1.0)
    land = pi * cyc
    land = land / np.maximum(land.sum(axis=1, keepdims=True), 1e-300)
    full = t_d + chains.x(i, c[:, None])[:, 0]
    ahead_n = _pois(lam[:, None] * cyc * _scale(a)[:, None] / 2.0, J_AHEAD)  # (m, S, J): earlier in its step
    # the tagged prompt's start, in cycles after the next one begins: the (q + j + 1)-th lane to free
    # when each prompt ahead holds its lane for a cycles (lanes free after ``lane_free`` cycles)
    ahead = st["waiting"][:, None] + np.arange(J_AHEAD, dtype=float)[None, :]  # (S, J)
    rounds = int(Q_MAX + J_AHEAD) + 1
    scale = _scale(a)[:, None, None, None]
    times = st["lane_free"][None, :, :, None] * scale + a[:, None, None, None] * np.arange(rounds, dtype=float)
    times = np.sort(times.reshape(m, S, -1), axis=2)
    order = np.minimum(ahead, times.shape[2] - 1).astype(int)  # (S, J)
    begin = np.take_along_axis(times[:, :, None, :], np.broadcast_to(order[None, :, :, None], (m, S, J_AHEAD, 1)),
                               axis=3)[..., 0]  # (m, S, J)
    free_now = np.maximum(st["free"], 1)[None, :, None]
    wait_slot = np.where(begin > 0, cyc[:, :, None], cyc[:, :, None] / free_now)  # R: for a free lane's slot
    own_full = np.ceil(a - 1e-9) - 1.0  # its full batches before the last
    tail = P - own_full * c
    trip_tail = t_d + chains.x(i, tail[:, None])[:, 0]
    # Around its last batch the pipe holds the batches formed during its last full cycle: each of the
    # p - 1 ahead is full if its lane is still on a prompt or took one arriving in its stage slot
    # (Poisson(lambda C_full / p)), and its own last batch is full if a prompt arriving in the slot
    # before it takes the room its tail leaves
    busy = st["busy"][None, :].astype(float)
    held = (land * busy).sum(axis=1) / np.maximum((land * (busy >= 1)).sum(axis=1), 1e-300)  # E[N | N >= 1]
    other = np.clip((held - 1.0) / max(p_lanes - 1, 1), 0.0, 1.0)
    arrive = 1.0 - np.exp(-lam * full / p_lanes)
    ahead_full = 1.0 - ((1.0 - other) * (1.0 - arrive)) ** (p_lanes - 1)
    shared = np.where(tail < c, arrive, 0.0)
    starts, widths, weights = [], [], []
    for own, w_own in ((full, shared), (trip_tail, 1.0 - shared)):
        for y, wy in ((full, ahead_full), (t_d, 1.0 - ahead_full)):
            L = _lane_exit(own, y, float(p_lanes))
            D = (np.ceil(begin) + own_full[:, None, None]) * full[:, None, None] + L[:, None, None]
            starts.append(D.reshape(m, -1))
            widths.append(np.broadcast_to(wait_slot, D.shape).reshape(m, -1))
            weights.append((land[:, :, None] * ahead_n * (w_own * wy)[:, None, None]).reshape(m, -1))
    return starts, widths, weights


def unstable(chains: Chains, lam, t_d, c):
    """Where the prompt queue grows without bound: the lanes' prompt work exceeds what full cycles
    serve, lambda a C_full / p >= 1 (the last solve's slopes)."""
    a = chains.P / np.maximum(c, 1.0)
    full = t_d + extra_s(chains.s1, chains.s2, chains.chunk, c)
    return lam * a * full / chains.p >= 1.0


__all__ = ["Chains", "extra_s", "left_behind", "mean_cycle", "ttft", "unstable"]
