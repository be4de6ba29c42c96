"""Collectives on one link or over a two-level hierarchy (scale-up domain x scale-out network).

Per-GPU traffic and step counts of ring algorithms (Thakur, Rabenseifner & Gropp 2005, "Optimization
of Collective Communication Operations in MPICH", IJHPCA 19(1); bandwidth optimality of the ring,
Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC
69(2)); bus-bandwidth factors as in NVIDIA nccl-tests doc/PERFORMANCE.md: all-reduce moves
2(n-1)/n·S in 2(n-1) steps; all-gather and reduce-scatter (n-1)/n·S in n-1 steps; all-to-all
(n-1)/n·S in n-1 steps; send/recv S in one step. ``S`` is the full (unsharded) message in bytes: the
all-reduce buffer, the gathered tensor, a GPU's all-to-all send buffer. n = 1 costs nothing.

A group of n ranks placed g per node over m = n/g nodes is priced by one of (``ALGORITHMS``):

* ``ring``: one flat ring. NCCL runs one ring channel per NIC, so across nodes the ring moves at
  min(B_intra, g·B_net) (``busBw = nChannels · speed``, NCCL src/graph/tuning.cc); of its steps,
  2(m-1) (all-reduce) or m-1 (gather/scatter) cross the network at the network's per-step latency and
  the rest stay on the scale-up link (the latency model of the same file).
* ``tree``: the logarithmic-latency variant of each collective (recursive doubling for gather and
  scatter, Bruck's algorithm for all-to-all, Thakur et al. 2005 §4); all-reduce as a double binary
  tree (Sanders, Speck & Träff 2009, "Two-tree algorithms for full bandwidth broadcast, reduction and
  scan", Parallel Computing 35(12); NCCL's Tree): each GPU
  moves 2·S at the bottleneck link (NCCL's tree algbw = busbw / 2), up and down a tree of depth
  log2(g) in the node (one switch hop between any two GPUs) and log2(m) over the network: latency
  2·(log2(g)·α_intra + log2(m)·α_net).
* ``hierarchical``: two levels (reduce-scatter in the node, all-reduce of S/g over the network between
  the GPUs of one local rank, all-gather in the node; gather/scatter do their two halves). Each level is
  a ring on its own link. All-to-all in two levels as DeepSeek-V3 (arXiv 2412.19437, §3.2.2) and
  DeepEP's normal kernels run it: each GPU sends all it has for a remote node, (n-g)/n·S, over its NIC
  to the GPU of its own local rank there, which forwards it over NVLink to the node's other GPUs; its
  NVLink carries its own node's share and what it forwards, (g-1)/g·S; IB and NVLink run at once. NCCL's
  PXN (NVIDIA, "Doubling all2all Performance with NVIDIA Collective Communication Library 2.12", 2022)
  does the NVLink hop first, to the GPU on the destination's rail; the bytes on each link are the same.
  One network message per remote node (m-1) instead of one per remote GPU (n-g).
* ``auto``: whichever of the above is fastest, as NCCL's tuner picks.

All-to-all across nodes (``ring``: the direct exchange) sends (g-1)/n·S over the scale-up link and
(n-g)/n·S over the network at once (GShard, Lepikhin et al. 2020, arXiv 2006.16668; DeepSpeed-MoE): the
slower of the two sets its time; each of its n-g network messages costs the host's post overhead.

Efficiencies: ``intra_efficiency`` (the profile's measured curve of this collective, over the per-GPU
bytes of the stage on the scale-up link) and ``net_protocols`` (the network's own model: per protocol
the ring-step and tree-level latency and the share of the NIC's bandwidth, ``protocol_terms`` of a
``hwmodels.Link``;
the fastest protocol is taken, as NCCL's tuner does; a network step costs at least a scale-up step,
whose bytes it also moves). ``CollectiveCost.wire_s`` is at the links' peaks
(the floor), ``achieved_wire_s`` with these efficiencies. Every function broadcasts over numpy arrays
of message sizes and group shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from costmodels.numeric import num


# Scalar-aware elementwise helpers: Python floats stay Python floats (a point prediction pays no numpy
# dispatch), arrays broadcast.
def _scalar(*xs) -> bool:
    return all(isinstance(x, (int, float)) for x in xs)


def _where(c, a, b):
    return (a if c else b) if isinstance(c, bool) else np.where(c, a, b)


def _minimum(a, b):
    return min(a, b) if type(a) is float and type(b) is float else np.minimum(a, b)


def _maximum(a, b):
    return max(a, b) if type(a) is float and type(b) is float else np.maximum(a, b)


def _log2(x):
    return math.log2(x) if type(x) is float else np.log2(x)


_FACTORS = {  # collective -> (bytes factor as f(n), alpha steps as f(n))
    "all_reduce": (lambda n: 2.0 * (n - 1.0) / n, lambda n: 2.0 * (n - 1.0)),
    "all_gather": (lambda n: (n - 1.0) / n, lambda n: n - 1.0),
    "reduce_scatter": (lambda n: (n - 1.0) / n, lambda n: n - 1.0),
    "all_to_all": (lambda n: (n - 1.0) / n, lambda n: n - 1.0),
    "send_recv": (lambda n: _where(n > 1, 1.0, 0.0), lambda n: _where(n > 1, 1.0, 0.0)),
}
_FACTORS["p2p"] = _FACTORS["send_recv"]  # the name earlier callers use
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
ALGORITHMS = ("ring", "tree", "hierarchical")
AUTO = "auto"


def collective_traffic(collective: str, message_bytes, num_ranks):
    """(bytes each GPU sends, number of latency-bound steps) of one collective as a ring in one domain."""
    n = num(num_ranks)
    byte_factor, steps = _FACTORS[collective]
    return num(message_bytes) * byte_factor(n), steps(n) + 0.0 * n


def _traffic(collective: str, s, n):
    byte_factor, steps = _FACTORS[collective]
    return s * byte_factor(n), steps(n)


def collective_time_s(collective: str, message_bytes, num_ranks, bandwidth_bytes_per_s: float, latency_s: float):
    """Ideal time of one collective on one link: steps·alpha + traffic / bandwidth."""
    traffic, steps = collective_traffic(collective, message_bytes, num_ranks)
    return steps * latency_s + traffic / bandwidth_bytes_per_s


def bus_bandwidth(collective: str, message_bytes, num_ranks, time_s):
    """nccl-tests' bus bandwidth: algbw = S / t times the collective's factor (doc/PERFORMANCE.md):
    2(n-1)/n for all-reduce, (n-1)/n for all-gather, reduce-scatter and all-to-all, 1 for send/recv."""
    n = np.asarray(num_ranks, dtype=float)
    factor = _FACTORS[collective][0](n)
    return np.asarray(message_bytes, dtype=float) / np.asarray(time_s, dtype=float) * factor


@dataclass
class CollectiveCost:
    """One collective's per-GPU cost: ``traffic_bytes`` sent, ``latency_s`` (the alpha terms, of the
    protocol chosen), ``wire_s`` (traffic over the links' peak bandwidths), ``achieved_wire_s`` (the same
    at the stages' efficiencies), the ``algorithm`` chosen (index into ``ALGORITHMS``), the network
    ``protocol`` chosen (index into the protocols given; 0 without) and whether it crosses the network."""

    traffic_bytes: np.ndarray
    latency_s: np.ndarray
    wire_s: np.ndarray
    algorithm: np.ndarray
    crosses_network: np.ndarray
    achieved_wire_s: np.ndarray | float | None = None
    protocol: np.ndarray | int = 0

    def __post_init__(self):
        if self.achieved_wire_s is None:
            self.achieved_wire_s = self.wire_s

    @property
    def time_s(self):
        """At the links' peaks: latency + traffic / peak bandwidth."""
        return self.latency_s + self.wire_s

    @property
    def achieved_time_s(self):
        """At the stages' efficiencies (what a step pays, before the launch overhead)."""
        return self.latency_s + self.achieved_wire_s

    @property
    def bandwidth_bytes_per_s(self):
        """Effective bandwidth: traffic / wire time (the bottleneck link's for a single ring)."""
        return np.where(self.wire_s > 0, self.traffic_bytes / np.where(self.wire_s > 0, self.wire_s, 1.0), np.inf)

    @property
    def efficiency(self):
        """Achieved over peak bandwidth: wire time at the peaks / achieved wire time (1 for no traffic)."""
        if type(self.wire_s) is float and type(self.achieved_wire_s) is float:
            return self.wire_s / self.achieved_wire_s if self.achieved_wire_s > 0.0 else 1.0
        ach = np.asarray(self.achieved_wire_s, dtype=float)
        return np.where(ach > 0, np.asarray(self.wire_s, dtype=float) / np.where(ach > 0, ach, 1.0), 1.0)


class _Links:
    """The two levels a collective runs on: scale-up (bandwidth, per-step latency, efficiency curve) and
    one network protocol (bandwidth, ring-step and tree-level latency, share of the bandwidth, the
    host's overhead per network message), and the launch overhead of one collective call."""

    __slots__ = ("b_intra", "a_intra", "curve", "b_net", "a_ring", "a_tree", "e_net", "post_s", "launch_s")

    def __init__(self, b_intra, a_intra, curve, b_net, a_ring, a_tree, e_net, post_s, launch_s):
        self.b_intra, self.a_intra, self.curve, self.b_net = b_intra, a_intra, curve, b_net
        self.a_ring, self.a_tree, self.e_net, self.post_s, self.launch_s = a_ring, a_tree, e_net, post_s, launch_s

    def e_intra(self, nbytes):
        """The scale-up curve at ``nbytes`` (``Curve``-like: ``at`` for a float, a call for arrays)."""
        if self.curve is None:
            return 1.0
        return self.curve.at(nbytes) if type(nbytes) is float else self.curve(nbytes)

    def net_bw(self, nbytes):
        """Achieved bandwidth of a network stage moving ``nbytes``: the protocol's share of the NIC, and never
        more than the scale-up link reaches on the same bytes (the same kernels read and write them)."""
        if self.curve is None:
            return _minimum(self.b_net * self.e_net, self.b_intra)
        return _minimum(self.b_net * self.e_net, self.b_intra * self.e_intra(nbytes))


def _ring(collective, s, n, g, m, L: _Links):
    """(traffic, latency, wire at peak, achieved wire)."""
    traffic, steps = _traffic(collective, s, n)
    spans = m > 1
    if collective == "all_to_all":  # direct exchange: same-node and other-node peers at once
        intra = s * (g - 1.0) / n
        net = s * (n - g) / n
        wire = _maximum(intra / L.b_intra, _where(spans, net / L.b_net, 0.0))
        achieved = _maximum(intra / (L.b_intra * L.e_intra(intra)), _where(spans, net / L.net_bw(net), 0.0))
        latency = (g - 1.0) * L.a_intra + (m - 1.0) * L.a_ring + (n - g) * L.post_s
        return traffic, latency, wire, achieved
    if collective == "send_recv":  # between two ranks; across nodes when the group spans them
        bw = _where(spans, L.b_net, L.b_intra)
        bw_achieved = _where(spans, L.net_bw(traffic), L.b_intra * L.e_intra(traffic))
        return traffic, steps * _where(spans, L.a_ring, L.a_intra), traffic / bw, traffic / bw_achieved
    inter_steps = _where(spans, (2.0 if collective == "all_reduce" else 1.0) * (m - 1.0), 0.0)
    bw = _where(spans, _minimum(L.b_intra, g * L.b_net), L.b_intra)
    intra_bw = L.b_intra * L.e_intra(traffic)
    bw_achieved = _where(spans, _minimum(intra_bw, g * L.b_net * L.e_net), intra_bw)
    latency = (steps - inter_steps) * L.a_intra + inter_steps * L.a_ring
    return traffic, latency, traffic / bw, traffic / bw_achieved


def _tree(collective, s, n, g, m, L: _Links):
    """Logarithmic-latency variants: double binary tree (all-reduce), recursive doubling / halving
    (all-gather, reduce-scatter) and Bruck's algorithm (all-to-all), Thakur et al. 2005 §4."""
    spans = m > 1
    lg, lm = _log2(_maximum(g, 1.0)), _log2(_maximum(m, 1.0))
    latency = _where(n > 1, lg * L.a_intra + lm * L.a_tree, 0.0)
    bw = _where(spans, _minimum(L.b_intra, g * L.b_net), L.b_intra)
    if collective == "all_to_all":  # log2(n) rounds, each sending half the buffer
        traffic = s / 2.0 * (lg + lm)
        wire = s / 2.0 * (lg / L.b_intra + _where(spans, lm / L.b_net, 0.0))
        achieved = s / 2.0 * (lg / (L.b_intra * L.e_intra(s / 2.0 * lg)) + _where(spans, lm / L.net_bw(s / 2.0 * lm), 0.0))
        return traffic, latency, wire, achieved
    if collective == "send_recv":
        return _ring(collective, s, n, g, m, L)
    if collective == "all_reduce":
        traffic = _where(n > 1, 2.0 * s, 0.0)
        latency = 2.0 * latency
    else:
        traffic, _ = _traffic(collective, s, n)  # same bytes as the ring, log2(n) rounds
    intra_bw = L.b_intra * L.e_intra(traffic)
    bw_achieved = _where(spans, _minimum(intra_bw, g * L.b_net * L.e_net), intra_bw)
    return traffic, latency, traffic / bw, traffic / bw_achieved


def _hierarchical(collective, s, n, g, m, L: _Links):
    if collective == "all_to_all":  # DeepEP / PXN: NIC to the same local rank, NVLink forwarding, at once
        net = s * (n - g) / n
        intra = s * (g - 1.0) / _maximum(g, 1.0)
        wire = _maximum(intra / L.b_intra, net / L.b_net)
        achieved = _maximum(intra / (L.b_intra * L.e_intra(intra)), net / L.net_bw(net))
        latency = (g - 1.0) * L.a_intra + (m - 1.0) * (L.a_ring + L.post_s)
        return intra + net, latency, wire, achieved
    if collective not in ("all_reduce", "all_gather", "reduce_scatter"):
        return _ring(collective, s, n, g, m, L)
    half = "reduce_scatter" if collective == "all_reduce" else collective
    t_in, k_in = _traffic(half, s, g)  # within the node, over the whole message
    t_out, k_out = _traffic(collective, s / g, m)  # between nodes, over 1/g of it
    levels_in = 2.0 if collective == "all_reduce" else 1.0
    traffic = levels_in * t_in + t_out
    # three collectives (reduce-scatter, all-reduce, all-gather) or two, each launched: the first launch
    # is the collective's own overhead, the others are paid here
    latency = levels_in * k_in * L.a_intra + k_out * L.a_ring + levels_in * L.launch_s
    wire = levels_in * t_in / L.b_intra + t_out / L.b_net
    achieved = levels_in * t_in / (L.b_intra * L.e_intra(levels_in * t_in)) + t_out / L.net_bw(t_out)
    return traffic, latency, wire, achieved


_BUILDERS = (_ring, _tree, _hierarchical)


def protocol_terms(link) -> tuple[tuple[float, float, float], ...]:
    """(ring-step latency, tree-level latency, efficiency) of each of a link's protocols
    (``hwmodels.Link.protocols``), the form ``collective_cost`` takes them in."""
    return tuple((p.ring_step_latency_s, p.tree_step_latency_s, p.efficiency) for p in link.protocols)


def collective_cost(collective: str, message_bytes, num_ranks, ranks_per_node, intra_bandwidth_bytes_per_s,
                    intra_latency_s, net_bandwidth_bytes_per_s, net_latency_s, algorithm: str = AUTO,
                    intra_efficiency=None, net_protocols=(), net_message_overhead_s: float = 0.0,
                    launch_overhead_s: float = 0.0) -> CollectiveCost:
    """Per-GPU cost of one collective over ``num_ranks`` GPUs placed ``ranks_per_node`` per node.

    Within one node (ranks_per_node = num_ranks) every algorithm is a ring on the scale-up link, and
    this equals ``collective_time_s`` on that link. ``algorithm``: one of ``ALGORITHMS`` or ``auto``.
    ``intra_efficiency``: efficiency curve of the scale-up stages over their per-GPU bytes (None: the
    peak). ``net_protocols``: the network's protocols as (ring-step latency, tree-level latency, share of
    the NIC's bandwidth) (``protocol_terms(link)``; empty: one protocol at ``net_latency_s`` and line
    rate); the fastest combination of algorithm and protocol is taken. ``net_message_overhead_s``: the
    host's cost of posting one network message (all-to-all pays it per remote peer).
    ``launch_overhead_s``: the launch cost of one collective call, which the hierarchical all-reduce
    (three calls) and all-gather / reduce-scatter (two) pay for each call beyond the first."""
    if collective == "p2p":
        collective = "send_recv"
    if collective not in COLLECTIVES:
        raise ValueError(f"unknown collective {collective!r}")
    if algorithm not in (*ALGORITHMS, AUTO):
        raise ValueError(f"unknown algorithm {algorithm!r}")
    raw = (message_bytes, num_ranks, ranks_per_node)
    if not _scalar(*raw):
        raw = [x.item() if isinstance(x, np.generic) or (isinstance(x, np.ndarray) and x.ndim == 0) else x
               for x in raw]
    scalar = _scalar(*raw)
    conv = float if scalar else (lambda x: np.asarray(x, dtype=float))  # Python floats all the way down
    s, n, g = (conv(x) for x in raw)
    if scalar and n <= 1:  # one rank: nothing moves
        return CollectiveCost(0.0 * s, 0.0, 0.0, 0, False)
    g = _minimum(g, n)
    m = _maximum(n / _maximum(g, 1.0), 1.0)
    protocols = tuple(net_protocols) or ((net_latency_s, net_latency_s, 1.0),)
    if scalar and m <= 1.0:  # inside one node no network term is paid: any protocol gives the same
        protocols = protocols[:1]
    algos = range(len(ALGORITHMS)) if algorithm == AUTO else (ALGORITHMS.index(algorithm),)
    options = []  # (algorithm, protocol, (traffic, latency, wire, achieved))
    for p, (a_ring, a_tree, e_net) in enumerate(protocols):
        # a network step is never cheaper than a scale-up step: its bytes cross the node's fabric too
        links = _Links(intra_bandwidth_bytes_per_s, intra_latency_s, intra_efficiency, net_bandwidth_bytes_per_s,
                       max(a_ring, intra_latency_s), max(a_tree, intra_latency_s), e_net, net_message_overhead_s,
                       launch_overhead_s)
        options += [(a, p, _BUILDERS[a](collective, s, n, g, m, links)) for a in algos]
    if scalar:
        best = min(options, key=lambda o: o[2][1] + o[2][3])
        traffic, latency, wire, achieved = best[2]
        return CollectiveCost(traffic, latency, wire, best[0], m > 1, achieved, best[1])
    totals = np.stack(np.broadcast_arrays(*[o[2][1] + o[2][3] for o in options]))
    pick = np.argmin(totals, axis=0)
    traffic, latency, wire, achieved = (
        np.choose(pick, np.stack(np.broadcast_arrays(*[o[2][i] for o in options]))) for i in range(4))
    algo = np.choose(pick, [o[0] for o in options])
    proto = np.choose(pick, [o[1] for o in options])
    return CollectiveCost(traffic, latency, wire, algo, np.broadcast_to(m > 1, np.shape(traffic)), achieved, proto)
