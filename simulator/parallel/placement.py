"""Placement of parallel groups on a cluster, and the link each group's collectives run on.

Ranks are numbered innermost first: tensor parallel (TP), context parallel (CP), the attention
data-parallel replicas that one expert-parallel group joins (EDP), pipeline stages (PP), then the
remaining data-parallel replicas (DP). Consecutive ranks fill a node before the next, so TP stays in a
node while it fits, then CP and EP, then PP; DP is outermost (Megatron-LM's default order, Narayanan et
al. 2021, arXiv 2104.04473, §3; DeepSeek-V3's attention-DP + MoE-EP serving layout, arXiv 2412.19437,
§3.4). The mixture-of-experts group is the TP x CP x EDP ranks: ``ep`` expert shards, each split over
``etp`` GPUs (expert tensor parallelism), ep·etp = tp·cp·edp.

A group of ``size`` ranks ``stride`` apart spans ``nodes`` nodes with ``per_node`` ranks in each; its
collectives run on the scale-up link when it stays in a node and over the network otherwise (the slowest
link it spans). Every quantity broadcasts over numpy arrays of degrees (a sweep over tp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels import Link

GROUPS = ("tp", "cp", "ep", "etp", "pp", "dp")


@dataclass(frozen=True)
class Group:
    """One kind of parallel group: its size, the distance between its ranks, and how it sits on nodes."""

    name: str
    size: np.ndarray | int
    stride: np.ndarray | int
    per_node: np.ndarray | float
    nodes: np.ndarray | float
    link: str  # the slowest link the group spans (its name)


def span(size, stride, gpus_per_node: int):
    """(ranks per node, nodes) of a group of ``size`` ranks ``stride`` apart on nodes of ``gpus_per_node``."""
    n = np.asarray(size, dtype=float)
    s = np.asarray(stride, dtype=float)
    g = float(gpus_per_node)
    per_node = np.where(n * s <= g, n, np.where(s >= g, 1.0, np.floor(g / s)))
    per_node = np.maximum(per_node, 1.0)
    return per_node, np.ceil(n / per_node)


@dataclass(frozen=True)
class Placement:
    """The degrees of a deployment on ``num_nodes`` nodes of ``gpus_per_node`` GPUs."""

    gpus_per_node: int
    num_nodes: int
    intra: Link
    inter: Link
    tp: np.ndarray | int = 1
    cp: int = 1
    edp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    etp: np.ndarray | int = 1

    @property
    def used_gpus(self):
        return np.asarray(self.tp) * self.cp * self.edp * self.pp * self.dp

    def _size_stride(self, name: str):
        tp = np.asarray(self.tp)
        return {
            "tp": (tp, 1),
            "cp": (self.cp, tp),
            "ep": (self.ep, np.asarray(self.etp)),
            "etp": (np.asarray(self.etp), 1),
            "pp": (self.pp, tp * self.cp * self.edp),
            "dp": (self.edp * self.dp, tp * self.cp),  # attention data-parallel ranks (EDP then PP-strided DP)
        }[name]

    def group(self, name: str) -> Group:
        size, stride = self._size_stride(name)
        if name == "dp" and self.dp > 1 and self.pp > 1:  # DP replicas sit outside the pipeline
            size, stride = self.dp, np.asarray(self.tp) * self.cp * self.edp * self.pp
        per_node, nodes = span(size, stride, self.gpus_per_node)
        link = self.intra.name if np.all(nodes <= 1) else self.inter.name
        return Group(name, size, stride, per_node, nodes, link)

    def stage_boundary_crosses_nodes(self):
        """Whether the send/recv between two adjacent pipeline stages goes over the network."""
        stride = np.asarray(self.tp) * self.cp * self.edp
        _, nodes = span(2, stride, self.gpus_per_node)
        return np.asarray(nodes > 1) & (self.pp > 1)

    def ranks(self, name: str) -> list[int]:
        """The GPUs of the group of ``name`` that contains GPU 0 (scalar degrees only)."""
        size, stride = self._size_stride(name)
        if name == "dp" and self.dp > 1 and self.pp > 1:
            size, stride = self.dp, int(np.max(self.tp)) * self.cp * self.edp * self.pp
        return [int(i * int(np.max(stride))) for i in range(int(np.max(size)))]

    def describe(self) -> list[dict]:
        """Each group with more than one rank: size, GPUs of the first group, nodes spanned, link."""
        out = []
        for name in GROUPS:
            grp = self.group(name)
            if int(np.max(grp.size)) <= 1:
                continue
            ranks = self.ranks(name)
            out.append({"group": name, "size": int(np.max(grp.size)), "gpus": ranks,
                        "nodes": sorted({r // self.gpus_per_node for r in ranks}), "link": grp.link})
        return out
