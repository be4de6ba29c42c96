"""A parallel group's collective as an operator: the group's span on the cluster (``placement``) and
``costmodels.collectives.collective_cost`` give per-GPU traffic, alpha terms and the effective bandwidth
that ``costmodels.roofline.price`` turns into time with the profile's collective efficiency curve."""

from __future__ import annotations

import numpy as np

from costmodels.collectives import ALGORITHMS, collective_cost


def group_shape(dep, group: str):
    """(ranks, ranks per node, scale-up link, scale-out link) of ``group`` in the deployment's placement.
    Without a placement (a deployment built by hand) every group is one node on the GPU's own link."""
    return dep.cached(("group_shape", group), lambda: _group_shape(dep, group))


def _group_shape(dep, group: str):
    pl = dep.placement
    if pl is None:
        size = {"tp": dep.tp, "cp": dep.cp, "ep": dep.ep, "etp": dep.etp, "pp": dep.pp}[group]
        link = dep.gpu.intra_node_link
        return size, size, link, link
    grp = pl.group(group)
    return grp.size, grp.per_node, pl.intra, pl.inter


def group_cost(dep, group: str, collective: str, message_bytes, ranks=None, per_node=None):
    """(``CollectiveCost``, name of the link it runs on, algorithm name) of one collective of ``group``."""
    size, node_ranks, intra, inter = group_shape(dep, group)
    size = size if ranks is None else ranks
    node_ranks = node_ranks if per_node is None else per_node
    cost = collective_cost(collective, message_bytes, size, node_ranks, intra.bandwidth_bytes_per_s,
                           intra.latency_s, inter.bandwidth_bytes_per_s, inter.latency_s, dep.collective_algorithm)
    link = inter.name if np.any(cost.crosses_network) else intra.name
    algorithm = ALGORITHMS[int(np.max(cost.algorithm))] if np.size(cost.algorithm) else "ring"
    return cost, link, algorithm
