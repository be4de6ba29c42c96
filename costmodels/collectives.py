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
  a ring on its own link.
* ``auto``: whichever of the above is fastest at the links' peaks, as NCCL's tuner picks.

All-to-all across nodes sends (g-1)/n·S over the scale-up link and (n-g)/n·S over the network at once
(GShard, Lepikhin et al. 2020, arXiv 2006.16668; DeepSpeed-MoE): the slower of the two sets its time.
Every function broadcasts over numpy arrays of message sizes and group shapes.
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
    """One collective's per-GPU cost at the links' peaks: ``traffic_bytes`` sent, ``latency_s`` (the
    alpha terms), ``wire_s`` (traffic over the links' peak bandwidths), the ``algorithm`` chosen (index
    into ``ALGORITHMS``) and whether it crosses the network (``crosses_network``)."""

    traffic_bytes: np.ndarray
    latency_s: np.ndarray
    wire_s: np.ndarray
    algorithm: np.ndarray
    crosses_network: np.ndarray

    @property
    def time_s(self):
        return self.latency_s + self.wire_s

    @property
    def bandwidth_bytes_per_s(self):
        """Effective bandwidth: traffic / wire time (the bottleneck link's for a single ring)."""
        return np.where(self.wire_s > 0, self.traffic_bytes / np.where(self.wire_s > 0, self.wire_s, 1.0), np.inf)


def _ring(collective, s, n, g, m, b_intra, a_intra, b_net, a_net):
    traffic, steps = _traffic(collective, s, n)
    spans = m > 1
    if collective == "all_to_all":  # direct exchange: same-node and other-node peers at once
        intra = s * (g - 1.0) / n
        net = s * (n - g) / n
        wire = _maximum(intra / b_intra, _where(spans, net / b_net, 0.0))
        latency = (g - 1.0) * a_intra + (m - 1.0) * a_net
        return traffic, latency, wire
    if collective == "send_recv":  # between two ranks; across nodes when the group spans them
        return traffic, steps * _where(spans, a_net, a_intra), traffic / _where(spans, b_net, b_intra)
    inter_steps = _where(spans, (2.0 if collective == "all_reduce" else 1.0) * (m - 1.0), 0.0)
    bw = _where(spans, _minimum(b_intra, g * b_net), b_intra)
    latency = (steps - inter_steps) * a_intra + inter_steps * a_net
    return traffic, latency, traffic / bw


def _tree(collective, s, n, g, m, b_intra, a_intra, b_net, a_net):
    """Logarithmic-latency variants: double binary tree (all-reduce), recursive doubling / halving
    (all-gather, reduce-scatter) and Bruck's algorithm (all-to-all), Thakur et al. 2005 §4."""
    spans = m > 1
    lg, lm = _log2(_maximum(g, 1.0)), _log2(_maximum(m, 1.0))
    latency = _where(n > 1, lg * a_intra + lm * a_net, 0.0)
    bw = _where(spans, _minimum(b_intra, g * b_net), b_intra)
    if collective == "all_reduce":
        traffic = _where(n > 1, 2.0 * s, 0.0)
        return traffic, 2.0 * latency, traffic / bw
    if collective == "all_to_all":  # log2(n) rounds, each sending half the buffer
        traffic = s / 2.0 * (lg + lm)
        return traffic, latency, s / 2.0 * (lg / b_intra + _where(spans, lm / b_net, 0.0))
    if collective == "send_recv":
        return _ring(collective, s, n, g, m, b_intra, a_intra, b_net, a_net)
    traffic, _ = _traffic(collective, s, n)  # same bytes as the ring, log2(n) rounds
    return traffic, latency, traffic / bw


def _hierarchical(collective, s, n, g, m, b_intra, a_intra, b_net, a_net):
    if collective not in ("all_reduce", "all_gather", "reduce_scatter"):
        return _ring(collective, s, n, g, m, b_intra, a_intra, b_net, a_net)
    half = "reduce_scatter" if collective == "all_reduce" else collective
    t_in, k_in = _traffic(half, s, g)  # within the node, over the whole message
    t_out, k_out = _traffic(collective, s / g, m)  # between nodes, over 1/g of it
    levels_in = 2.0 if collective == "all_reduce" else 1.0
    traffic = levels_in * t_in + t_out
    latency = levels_in * k_in * a_intra + k_out * a_net
    wire = levels_in * t_in / b_intra + t_out / b_net
    return traffic, latency, wire


def collective_cost(collective: str, message_bytes, num_ranks, ranks_per_node, intra_bandwidth_bytes_per_s,
                    intra_latency_s, net_bandwidth_bytes_per_s, net_latency_s, algorithm: str = AUTO) -> CollectiveCost:
    """Per-GPU cost of one collective over ``num_ranks`` GPUs placed ``ranks_per_node`` per node.

    Within one node (ranks_per_node = num_ranks) every algorithm is a ring on the scale-up link, and
    this equals ``collective_time_s`` on that link. ``algorithm``: one of ``ALGORITHMS`` or ``auto``."""
    if collective == "p2p":
        collective = "send_recv"
    if collective not in COLLECTIVES:
        raise ValueError(f"unknown collective {collective!r}")
    raw = [x.item() if isinstance(x, np.generic) or (isinstance(x, np.ndarray) and x.ndim == 0) else x
           for x in (message_bytes, num_ranks, ranks_per_node)]
    scalar = _scalar(*raw)
    conv = float if scalar else (lambda x: np.asarray(x, dtype=float))  # Python floats all the way down
    s, n, g = (conv(x) for x in raw)
    if scalar and n <= 1:  # one rank: nothing moves
        return CollectiveCost(0.0 * s, 0.0, 0.0, 0, False)
    g = _minimum(g, n)
    m = _maximum(n / _maximum(g, 1.0), 1.0)
    args = (s, n, g, m, intra_bandwidth_bytes_per_s, intra_latency_s, net_bandwidth_bytes_per_s, net_latency_s)
    options = [_ring(collective, *args), _tree(collective, *args), _hierarchical(collective, *args)]
    if algorithm not in (*ALGORITHMS, AUTO):
        raise ValueError(f"unknown algorithm {algorithm!r}")
    if scalar:
        totals = [lat + wire for _, lat, wire in options]
        pick = totals.index(min(totals)) if algorithm == AUTO else ALGORITHMS.index(algorithm)
        traffic, latency, wire = options[pick]
        return CollectiveCost(traffic, latency, wire, pick, m > 1)
    if algorithm == AUTO:
        totals = np.stack(np.broadcast_arrays(*[lat + wire for _, lat, wire in options]))
        pick = np.argmin(totals, axis=0)
    else:
        pick = np.full(np.shape(options[0][0] + options[0][1]), ALGORITHMS.index(algorithm))
    traffic, latency, wire = (np.choose(pick, np.stack(np.broadcast_arrays(*[o[i] for o in options])))
                              for i in range(3))
    return CollectiveCost(traffic, latency, wire, pick, np.broadcast_to(m > 1, np.shape(traffic)))
