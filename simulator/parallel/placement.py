"""Placement of parallel groups on a cluster, and the link each group's collectives run on.

Ranks are numbered innermost first, by default: tensor parallel (TP), context parallel (CP), the
attention data-parallel replicas that one expert-parallel group joins (EDP), pipeline stages (PP),
then the remaining data-parallel replicas (DP); ``parallelism.order`` permutes them. Consecutive ranks fill a node before the next, so TP stays in a
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

import math

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
    g = float(gpus_per_node)
    if np.ndim(size) == 0 and np.ndim(stride) == 0:  # a point: plain floats
        n, s = float(size), float(stride)
        per_node = max(n if n * s <= g else (1.0 if s >= g else math.floor(g / s)), 1.0)
        return per_node, float(math.ceil(n / per_node))
    n = np.asarray(size, dtype=float)
    s = np.asarray(stride, dtype=float)
    per_node = np.where(n * s <= g, n, np.where(s >= g, 1.0, np.floor(g / s)))
    per_node = np.maximum(per_node, 1.0)
    return per_node, np.ceil(n / per_node)


ORDER = ("tp", "cp", "edp", "pp", "dp")  # innermost first


@dataclass(frozen=True)
class Placement:
    """The degrees of a deployment on ``num_nodes`` nodes of ``gpus_per_node`` GPUs, ranks numbered in
    ``order`` (innermost first; a permutation of ``ORDER``)."""

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
    order: tuple[str, ...] = ORDER

    @property
    def used_gpus(self):
        return np.asarray(self.tp) * self.cp * self.edp * self.pp * self.dp

    def _strides(self, tp):
        """Distance between neighbouring ranks of each dimension: the product of the dimensions inside it."""
        sizes = {"tp": tp, "cp": self.cp, "edp": self.edp, "pp": self.pp, "dp": self.dp}
        strides, inner = {}, 1
        for dim in self.order:
            strides[dim] = inner
            inner = inner * sizes[dim]
        return strides

    def _size_stride(self, name: str, tp=None, etp=None):
        tp = self.tp if tp is None else tp
        etp = self.etp if etp is None else etp
        st = self._strides(tp)
        if name in ("tp", "cp", "pp"):
            return {"tp": tp, "cp": self.cp, "pp": self.pp}[name], st[name]
        if name in ("ep", "etp"):  # the MoE group: tp, cp and edp adjacent in the order (apply_parallelism checks)
            return (self.ep, st["tp"] * etp) if name == "ep" else (etp, st["tp"])
        if self._dp_adjacent():
            return self.edp * self.dp, st["edp"]
        return self.dp, st["dp"]

    def _dp_adjacent(self) -> bool:
        """Whether the EDP and DP ranks form one run (nothing of size > 1 between them)."""
        sizes = {"tp": np.max(self.tp), "cp": self.cp, "edp": self.edp, "pp": self.pp, "dp": self.dp}
        i, j = sorted((self.order.index("edp"), self.order.index("dp")))
        return self.order.index("edp") < self.order.index("dp") and all(sizes[d] == 1 for d in self.order[i + 1:j]) \
            or self.dp == 1

    def group(self, name: str, tp=None, etp=None) -> Group:
        """The group ``name``; ``tp`` / ``etp`` override the degrees (arrays with a deployment's extra axes)."""
        size, stride = self._size_stride(name, tp, etp)
        per_node, nodes = span(size, stride, self.gpus_per_node)
        link = self.intra.name if np.all(nodes <= 1) else self.inter.name
        return Group(name, size, stride, per_node, nodes, link)

    def stage_boundary_crosses_nodes(self, tp=None):
        """Whether the send/recv between two adjacent pipeline stages goes over the network."""
        stride = self._strides(self.tp if tp is None else tp)["pp"]
        _, nodes = span(2, stride, self.gpus_per_node)
        return np.asarray(nodes > 1) & (self.pp > 1)

    def ranks(self, name: str) -> list[int]:
        """The GPUs of the group of ``name`` that contains GPU 0 (scalar degrees only)."""
        size, stride = self._size_stride(name)
        return [int(i * int(np.max(stride))) for i in range(int(np.max(size)))]

    def describe(self) -> list[dict]:
        """Each group with more than one rank: size, GPUs of the first group, nodes spanned, link."""
        out = []
        for name in GROUPS:
            grp = self.group(name)
            if int(np.max(grp.size)) <= 1 or (name == "etp" and self.ep == 1):  # etp = tp without EP
                continue
            ranks = self.ranks(name)
            out.append({"group": name, "size": int(np.max(grp.size)), "gpus": ranks,
                        "nodes": sorted({r // self.gpus_per_node for r in ranks}), "link": grp.link})
        return out
