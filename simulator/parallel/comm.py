"""A parallel group's collective as an operator: the group's span on the cluster (``placement``), the
profile's measured curve for this collective and group size (``Profile.collective_efficiency``) on the
scale-up stages, the network's own protocol model (``hwmodels.Link.protocols``) on the scale-out stages,
and ``costmodels.collectives.collective_cost`` give per-GPU traffic, alpha terms, peak and achieved wire
time, which ``costmodels.roofline.price`` adds up with the curve's launch overhead."""

from __future__ import annotations

import numpy as np

from costmodels.collectives import ALGORITHMS, CollectiveCost, collective_cost, protocol_terms


def group_shape(dep, group: str):
    """(ranks, ranks per node, scale-up link, scale-out link) of ``group`` in the deployment's placement.
    Without a placement (a deployment built by hand) every group is one node on the GPU's own link."""
    return dep.cached(("group_shape", group), _group_shape, dep, group)


def _group_shape(dep, group: str):
    pl = dep.placement
    if pl is None:
        size = {"tp": dep.tp, "cp": dep.cp, "ep": dep.ep, "etp": dep.etp, "pp": dep.pp, "dp": dep.replicas}[group]
        link = dep.gpu.intra_node_link
        return size, size, link, link
    grp = pl.group(group, tp=dep.tp, etp=dep.etp)
    return grp.size, grp.per_node, pl.intra, pl.inter


def curve_ranks(size, per_node):
    """The group size whose measured curve prices a collective: the ranks it has in one node (the scale-up
    stage's), or both ranks of a send/recv that spans two nodes."""
    if not isinstance(size, np.ndarray) and not isinstance(per_node, np.ndarray):
        return max(min(int(size), int(per_node)), 2 if size > 1 else 1)
    return np.maximum(np.minimum(size, per_node), np.where(np.asarray(size) > 1, 2, 1))


def price_collective(profile, collective: str, message_bytes, size, per_node, intra, inter, algorithm="auto"):
    """(``CollectiveCost``, launch overhead) of one collective of ``size`` ranks, ``per_node`` per node, on
    the scale-up link ``intra`` and the network ``inter``: the scale-up stages at the profile's curve for
    this collective at the group size nearest its ranks in a node, the network at its own protocols."""
    ranks = curve_ranks(size, per_node)
    if type(ranks) is int:
        eff = profile.collective_efficiency(collective, ranks)
        curve = _scale_up_curve(eff)
        one_node = not isinstance(size, np.ndarray) and not isinstance(per_node, np.ndarray) and per_node >= size
        return _priced(collective, message_bytes, size, per_node, intra, inter, algorithm, curve, eff.overhead_s,
                       one_node), eff.overhead_s
    # a sweep over degrees: each point on the curve and launch overhead of its own in-node group size
    values, index = np.unique(ranks, return_inverse=True)
    effs = [profile.collective_efficiency(collective, int(r)) for r in values]
    distinct = list({id(e): e for e in effs}.values())  # group sizes that share a measured curve share it here
    if len(distinct) == 1:
        curve, overhead = _scale_up_curve(distinct[0]), distinct[0].overhead_s
    else:
        index = np.array([distinct.index(e) for e in effs])[index].reshape(np.shape(ranks))
        curve = _CurvePerPoint([e.memory for e in distinct], index)
        overhead = np.array([e.overhead_s for e in distinct])[index]
    return _priced(collective, message_bytes, size, per_node, intra, inter, algorithm, curve, overhead,
                   False), overhead


def _scale_up_curve(eff):
    """The curve of a collective's scale-up stages; None at the links' peak (a flat 1)."""
    return eff.memory if len(eff.memory.efficiency) > 1 or eff.memory.efficiency[0] != 1.0 else None


class _CurvePerPoint:
    """Scale-up efficiency curves chosen point by point: ``curves[index]`` at each point of a sweep
    (``Curve``-like for ``collective_cost``, which calls it on arrays of bytes)."""

    __slots__ = ("curves", "index")

    def __init__(self, curves, index):
        self.curves, self.index = curves, index

    def __call__(self, nbytes):
        out = self.curves[0](nbytes)
        for i, curve in enumerate(self.curves[1:], 1):
            out = np.where(self.index == i, curve(nbytes), out)
        return out


def _priced(collective, message_bytes, size, per_node, intra, inter, algorithm, curve, overhead_s, one_node):
    return collective_cost(collective, message_bytes, size, per_node, intra.bandwidth_bytes_per_s, intra.latency_s,
                           inter.bandwidth_bytes_per_s, inter.latency_s, algorithm, intra_efficiency=curve,
                           net_protocols=() if one_node else protocol_terms(inter),
                           net_message_overhead_s=inter.message_overhead_s, launch_overhead_s=overhead_s)


def link_terms(cost: CollectiveCost, overhead) -> dict:
    """The link fields of a collective's operator (``costmodels.roofline.OpCost``) from its priced cost:
    per-GPU traffic, alpha terms, the peak bandwidth the traffic moves at and the share of it achieved, the
    launch overhead; ``costmodels.roofline.price`` then gives alpha + achieved wire time + overhead."""
    bw = np.where(cost.wire_s > 0, cost.bandwidth_bytes_per_s, 1.0)
    return {"link_bytes": cost.traffic_bytes, "link_latency_s": cost.latency_s, "link_bandwidth_bytes_per_s": bw,
            "link_efficiency": cost.efficiency, "link_overhead_s": overhead}


def group_cost(dep, group: str, collective: str, message_bytes, ranks=None, per_node=None):
    """(``CollectiveCost``, launch overhead, link name, algorithm name, ranks) of one collective of ``group``
    (tp, cp, ep, etp, pp, dp); ``ranks`` / ``per_node`` override the group's span (a send/recv between two
    stages)."""
    size, node_ranks, intra, inter = group_shape(dep, group)
    size = size if ranks is None else ranks
    node_ranks = node_ranks if per_node is None else per_node
    cost, overhead = price_collective(dep.profile, collective, message_bytes, size, node_ranks, intra, inter,
                                      dep.collective_algorithm)
    crosses, pick = cost.crosses_network, cost.algorithm
    link = inter.name if (crosses if isinstance(crosses, bool) else np.any(crosses)) else intra.name
    algorithm = ALGORITHMS[pick if isinstance(pick, int) else (int(np.max(pick)) if np.size(pick) else 0)]
    return cost, overhead, link, algorithm, size
