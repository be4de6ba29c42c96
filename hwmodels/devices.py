"""What a device is: accelerators, links, host memory, nodes and clusters.

Every number in a catalog file carries a source URL (``sources`` maps each numeric field to the
datasheet or spec page it was read from). Peaks are dense (no 2:4 structured sparsity). Units are SI
and in the field names: bytes, bytes/s, FLOP/s, seconds, hertz, watts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from hwmodels.dtypes import DType


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinkProtocol(_Strict):
    """One way of moving a collective's bytes over a link (NCCL's LL, LL128, Simple): the latency of one
    ring step and of one tree level, and the fraction of the link's bandwidth it reaches."""

    name: str
    ring_step_latency_s: float = Field(ge=0.0)
    tree_step_latency_s: float = Field(ge=0.0)
    efficiency: float = Field(gt=0.0, le=1.0, description="fraction of the link's bandwidth reached")


class Link(_Strict):
    """A point-to-point or switched link. Bandwidth is per direction, per device. ``protocols``: how
    collectives move over it, when the link's own data says so (a scale-out network); without them a
    collective's efficiency on the link comes from the calibration profile."""

    name: str
    bandwidth_bytes_per_s: PositiveFloat = Field(description="unidirectional bandwidth per device")
    latency_s: float = Field(ge=0.0, description="per-message latency (alpha of the alpha-beta model)")
    protocols: tuple[LinkProtocol, ...] = ()
    message_overhead_s: float = Field(0.0, ge=0.0, description="host cost of posting one message on the link")
    sources: dict[str, str] = Field(default_factory=dict)


class HostMemory(_Strict):
    """Host DDR attached to a node."""

    capacity_bytes: PositiveFloat
    bandwidth_bytes_per_s: PositiveFloat
    sources: dict[str, str] = Field(default_factory=dict)


class Accelerator(_Strict):
    """One GPU (or other accelerator) as its datasheet describes it."""

    name: str
    display_name: str
    vendor: Literal["nvidia", "amd", "intel", "google"]
    architecture: str
    peak_flops_per_s: dict[DType, PositiveFloat] = Field(
        description="dense tensor/matrix peak per dtype; a dtype the chip lacks is absent"
    )
    hbm_capacity_bytes: PositiveFloat
    hbm_bandwidth_bytes_per_s: PositiveFloat
    l2_bytes: PositiveFloat
    sm_count: PositiveInt = Field(description="SMs (NVIDIA), CUs (AMD), or cores (TPU/Gaudi)")
    boost_clock_hz: PositiveFloat
    tdp_w: PositiveFloat
    intra_node_link: Link
    host_link: Link
    sources: dict[str, str] = Field(description="numeric field -> source URL")
    notes: str = ""

    @model_validator(mode="after")
    def _every_number_has_a_source(self) -> "Accelerator":
        numeric = [
            "peak_flops_per_s",
            "hbm_capacity_bytes",
            "hbm_bandwidth_bytes_per_s",
            "l2_bytes",
            "sm_count",
            "boost_clock_hz",
            "tdp_w",
        ]
        missing = [f for f in numeric if not self.sources.get(f, "").startswith("http")]
        if missing:
            raise ValueError(f"no source URL for {', '.join(missing)}")
        for link_field in ("intra_node_link", "host_link"):
            link = getattr(self, link_field)
            if not link.sources.get("bandwidth_bytes_per_s", "").startswith("http"):
                raise ValueError(f"{link_field}: no source URL for bandwidth_bytes_per_s")
        if "bf16" not in self.peak_flops_per_s and "fp16" not in self.peak_flops_per_s:
            raise ValueError("peak_flops_per_s needs at least bf16 or fp16")
        return self

    def peak_for(self, dtype: str) -> float:
        """Dense peak FLOP/s for a compute dtype, falling back to the nearest wider format the chip has.

        A chip without fp8 (A100) runs fp8-stored operands at its bf16 rate after upcasting; int4/fp4
        weight-only formats compute at the activation format's rate, so they map to bf16 unless the chip
        lists a native fp4 peak.
        """
        fallbacks = {
            "fp4": ["fp4", "fp8", "bf16", "fp16"],
            "int4": ["int4", "int8", "bf16", "fp16"],
            "fp8": ["fp8", "bf16", "fp16"],
            "int8": ["int8", "bf16", "fp16"],
            "bf16": ["bf16", "fp16"],
            "fp16": ["fp16", "bf16"],
            "tf32": ["tf32", "fp32"],
            "fp32": ["fp32", "tf32"],
            "fp64": ["fp64", "fp32"],
        }
        for key in fallbacks[dtype]:
            if key in self.peak_flops_per_s:
                return self.peak_flops_per_s[key]
        return self.peak_flops_per_s.get("bf16") or self.peak_flops_per_s["fp16"]


class Node(_Strict):
    """A scale-up domain: identical accelerators joined by one intra-node link (NVLink/NVSwitch, xGMI),
    plus host memory. ``scale_up_link`` overrides the accelerator's own intra-node link (a rack-scale
    NVLink domain such as GB200 NVL72); ``network`` names the scale-out network the node ships with."""

    name: str
    accelerator: str
    accelerators_per_node: PositiveInt
    host_memory: HostMemory
    scale_up_link: Link | None = None
    network: str | None = Field(None, description="default scale-out network (hwmodels/data/networks)")
    nics_per_node: PositiveInt | None = Field(None, description="scale-out NICs (one per GPU on rail-optimised nodes)")
    sources: dict[str, str] = Field(default_factory=dict)


class NetworkProtocol(_Strict):
    """A collective protocol over the network as NCCL's tuner models it (``src/graph/tuning.cc``): the
    latency of one ring step and one tree level between nodes (``hwLat[NET]``) and the share of the
    NIC's achieved bandwidth it moves (``busBw`` x 0.5 for LL, x 0.92 for LL128, x 1 for Simple)."""

    name: str
    ring_step_latency_s: float = Field(ge=0.0)
    tree_step_latency_s: float = Field(ge=0.0)
    bandwidth_fraction: float = Field(gt=0.0, le=1.0)


class Network(_Strict):
    """A scale-out network (InfiniBand, RoCE) as one GPU sees it: its NIC's bandwidth per direction, the
    latency of one collective step between nodes, and the fabric's shape. On a rail-optimised fabric the
    GPUs of one local rank share a leaf switch (one switch hop between nodes); otherwise a message crosses
    leaf, spine and leaf (two more hops of ``switch_latency_s``).

    ``nic_efficiency`` (the share of line rate a NIC sustains under NCCL at large messages, measured) and
    ``protocols`` (NCCL's per-protocol latencies and bandwidth factors) are the network's own collective
    model: a collective's network stage is priced with whichever protocol is fastest, at
    ``bandwidth x nic_efficiency x bandwidth_fraction``; ``message_overhead_s`` is what the host's proxy
    pays to post one network message. A network without them moves at line rate with ``latency_s`` per
    step."""

    name: str
    display_name: str
    kind: Literal["infiniband", "roce"]
    bandwidth_bytes_per_s: PositiveFloat = Field(description="per GPU (its NIC), per direction")
    latency_s: float = Field(ge=0.0, description="one collective step between two nodes through one switch")
    switch_latency_s: float = Field(ge=0.0, description="one more switch traversal")
    rail_optimized: bool = True
    nic_efficiency: float = Field(1.0, gt=0.0, le=1.0, description="share of line rate sustained at large messages")
    protocols: tuple[NetworkProtocol, ...] = ()
    message_overhead_s: float = Field(0.0, ge=0.0, description="host (proxy) cost of posting one network message")
    sources: dict[str, str] = Field(description="numeric field -> source URL")

    @model_validator(mode="after")
    def _sourced(self) -> "Network":
        fields = ["bandwidth_bytes_per_s", "latency_s", "switch_latency_s", "rail_optimized"]
        fields += ["nic_efficiency"] if "nic_efficiency" in self.model_fields_set else []
        fields += ["protocols"] if self.protocols else []
        fields += ["message_overhead_s"] if self.message_overhead_s else []
        missing = [f for f in fields if not self.sources.get(f, "").startswith("http")]
        if missing:
            raise ValueError(f"no source URL for {', '.join(missing)}")
        return self

    def link(self) -> Link:
        """The network as a point-to-point link between two GPUs of different nodes: off a rail-optimised
        fabric every step crosses two more switches; each protocol reaches ``nic_efficiency`` x its
        bandwidth fraction of the NIC."""
        extra = (0 if self.rail_optimized else 2) * self.switch_latency_s
        protocols = tuple(LinkProtocol(name=p.name, ring_step_latency_s=p.ring_step_latency_s + extra,
                                       tree_step_latency_s=p.tree_step_latency_s + extra,
                                       efficiency=self.nic_efficiency * p.bandwidth_fraction)
                          for p in self.protocols)
        if not protocols and self.nic_efficiency < 1.0:
            protocols = (LinkProtocol(name="nic", ring_step_latency_s=self.latency_s + extra,
                                      tree_step_latency_s=self.latency_s + extra, efficiency=self.nic_efficiency),)
        return Link(name=self.name, bandwidth_bytes_per_s=self.bandwidth_bytes_per_s,
                    latency_s=self.latency_s + extra, protocols=protocols,
                    message_overhead_s=self.message_overhead_s, sources=self.sources)


class Cluster(_Strict):
    """Nodes joined by a scale-out network (bandwidth per GPU, per direction)."""

    node: Node
    num_nodes: PositiveInt
    inter_node_link: Link
    intra_node_link: Link | None = None  # the node's scale-up link; None: the accelerator's own
    network: Network | None = None

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.node.accelerators_per_node
