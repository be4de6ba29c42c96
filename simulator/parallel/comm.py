"""A parallel group's collective as an operator: the group's span on the cluster (``placement``) and
``costmodels.collectives.collective_cost`` give per-GPU traffic, alpha terms and the effective bandwidth
that ``costmodels.roofline.price`` turns into time with the profile's collective efficiency curve."""

from __future__ import annotations

import numpy as np

from costmodels.collectives import ALGORITHMS, collective_cost


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


def group_cost(dep, group: str, collective: str, message_bytes, ranks=None, per_node=None):
    """(``CollectiveCost``, link name, algorithm name, ranks) of one collective of ``group`` (tp, cp, ep,
    etp, pp, dp); ``ranks`` / ``per_node`` override the group's span (a send/recv between two stages)."""
    size, node_ranks, intra, inter = group_shape(dep, group)
    size = size if ranks is None else ranks
    node_ranks = node_ranks if per_node is None else per_node
    cost = collective_cost(collective, message_bytes, size, node_ranks, intra.bandwidth_bytes_per_s,
                           intra.latency_s, inter.bandwidth_bytes_per_s, inter.latency_s, dep.collective_algorithm)
    crosses, pick = cost.crosses_network, cost.algorithm
    link = inter.name if (crosses if isinstance(crosses, bool) else np.any(crosses)) else intra.name
    algorithm = ALGORITHMS[pick if isinstance(pick, int) else (int(np.max(pick)) if np.size(pick) else 0)]
    return cost, link, algorithm, size
