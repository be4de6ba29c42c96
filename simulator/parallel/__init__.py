"""Parallelism over a cluster: where each group sits (``placement``), what its collectives cost on the
links it spans (``comm``), pipelined micro-batches (``pipeline``) and overlap per boundary (``overlap``).

``apply_parallelism`` resolves a scenario's cluster and degrees onto a ``Deployment`` and rejects
impossible layouts with one-line ``InputError``s.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hwmodels import InputError, get_cluster, get_network, get_node, nodes_with
from simulator.parallel.placement import Placement

GENERIC_GPUS_PER_NODE = 8  # a GPU with no catalog node: 8-GPU domains on its own intra-node link
GENERIC_NETWORK = "ib-ndr-400"


def cluster_links(scenario, gpu):
    """(GPUs per node, scale-up link, scale-out link, nodes in the cluster or None) for a scenario."""
    hw = scenario.hardware
    name = hw.node
    if name is None:
        matches = nodes_with(gpu.name)
        name = matches[0] if len(matches) == 1 else None
    if name is None:
        net = get_network(hw.network or GENERIC_NETWORK)
        return GENERIC_GPUS_PER_NODE, gpu.intra_node_link, net.link(), hw.num_nodes
    node = get_node(name)
    if node.accelerator != gpu.name:
        raise InputError("hardware.node", f"{name} holds {node.accelerator}, not {gpu.name}")
    cluster = get_cluster(node, hw.num_gpus, hw.network, gpu)
    return node.accelerators_per_node, cluster.intra_node_link, cluster.inter_node_link, hw.num_nodes


def apply_parallelism(dep, scenario):
    """The deployment with its CP/EP/SP/PP settings and its placement; errors name the field."""
    par, hw, model = scenario.parallelism, scenario.hardware, dep.model
    tp = np.asarray(dep.tp)
    cp, pp = par.cp, dep.pp
    if par.ep > 1 and dep.ep > 1 and par.ep != dep.ep:
        raise InputError("parallelism.ep", f"ep={par.ep} conflicts with the moe technique's expert_parallel={dep.ep}")
    ep = par.ep if par.ep > 1 else dep.ep
    per_node, intra, inter, num_nodes = cluster_links(scenario, dep.gpu)
    if num_nodes is not None and hw.num_gpus > num_nodes * per_node:
        raise InputError("hardware.num_gpus", f"{hw.num_gpus} GPUs exceed the cluster's {num_nodes} x {per_node}")
    if np.any(tp * cp * pp > hw.num_gpus):
        raise InputError("hardware.num_gpus", f"{hw.num_gpus} GPUs cannot hold tp x cp x pp = "
                         f"{int(np.max(tp)) * cp * pp}")
    if cp > 1 and "linear" in dep.layer_kinds:
        raise InputError("parallelism.cp", f"{model.name} has recurrent (linear-attention) layers, whose state "
                         "cannot be split over the sequence")
    if ep > 1 and model.moe is None:
        raise InputError("parallelism.ep", f"{model.name} has no routed experts")
    if ep > 1 and model.moe.num_experts % ep:
        raise InputError("parallelism.ep", f"ep={ep} does not divide num_experts={model.moe.num_experts}")
    etp = np.asarray(par.expert_tp if par.expert_tp is not None else (tp if ep == 1 else 1))
    moe_group = ep * etp
    if ep > 1 and np.any(moe_group % (tp * cp)):
        raise InputError("parallelism.ep", f"ep x expert_tp = {int(np.max(moe_group))} must be a multiple of "
                         f"tp x cp = {int(np.max(tp)) * cp}")
    replicas = hw.num_gpus // (int(np.max(tp)) * cp * pp)
    edp = np.maximum(moe_group // (tp * cp), 1) if ep > 1 else np.ones_like(tp)
    if np.any(edp > replicas) or np.any(replicas % edp):
        raise InputError("parallelism.ep", f"an expert-parallel group of {int(np.max(moe_group))} GPUs needs "
                         f"{int(np.max(edp))} attention replicas; {hw.num_gpus} GPUs give {replicas}")
    if par.microbatches is not None and pp == 1 and par.microbatches > 1:
        raise InputError("parallelism.microbatches", "micro-batches need pp > 1")
    edp_int = int(np.max(edp))
    placement = Placement(gpus_per_node=per_node, num_nodes=-(-hw.num_gpus // per_node), intra=intra, inter=inter,
                          tp=dep.tp, cp=cp, edp=edp_int, pp=pp, dp=max(replicas // edp_int, 1), ep=ep,
                          etp=par.expert_tp if par.expert_tp is not None else (dep.tp if ep == 1 else 1))
    return replace(dep, cp=cp, ep=ep, expert_tp=par.expert_tp, sp=par.sp, microbatches=par.microbatches,
                   placement=placement, replicas=replicas, collective_algorithm=par.collective_algorithm,
                   overlap_boundaries=par.overlap.model_dump() | {"cp_method": par.cp_method})
