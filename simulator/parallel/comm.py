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
    return dep.cached(("group_shape", group), lambda: _group_shape(dep, group))


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
        return _priced(profile, collective, message_bytes, size, per_node, intra, inter, algorithm, int(ranks))
    # a sweep over degrees: each distinct in-node group size at its own curve, merged point by point
    costs = {int(r): _priced(profile, collective, message_bytes, size, per_node, intra, inter, algorithm, int(r))
             for r in np.unique(ranks)}

    def merged(field):
        return sum(np.where(ranks == r, np.asarray(getattr(c, field), dtype=float), 0.0) for r, (c, _) in costs.items())

    cost = CollectiveCost(merged("traffic_bytes"), merged("latency_s"), merged("wire_s"),
                          merged("algorithm").astype(int), merged("crosses_network").astype(bool),
                          merged("achieved_wire_s"), merged("protocol").astype(int))
    return cost, sum(np.where(ranks == r, e, 0.0) for r, (_, e) in costs.items())


def _priced(profile, collective, message_bytes, size, per_node, intra, inter, algorithm, ranks):
    eff = profile.collective_efficiency(collective, ranks)
    curve = eff.memory if len(eff.memory.efficiency) > 1 or eff.memory.efficiency[0] != 1.0 else None
    one_node = not isinstance(size, np.ndarray) and not isinstance(per_node, np.ndarray) and per_node >= size
    cost = collective_cost(collective, message_bytes, size, per_node, intra.bandwidth_bytes_per_s, intra.latency_s,
                           inter.bandwidth_bytes_per_s, inter.latency_s, algorithm, intra_efficiency=curve,
                           net_protocols=() if one_node else protocol_terms(inter),
                           net_message_overhead_s=inter.message_overhead_s, launch_overhead_s=eff.overhead_s)
    return cost, eff.overhead_s


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
