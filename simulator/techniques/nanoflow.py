"""NanoFlow: the compute-bound throughput optimum, and nano-batching that overlaps resources to reach it.

Serving is compute-bound at the batch sizes that maximise throughput, so a GPU can at best process
``achievable FLOP/s / (2 · P_active)`` tokens per second: each token multiplies every active weight
once (2 FLOPs per weight), and weights and KV traffic hide under the compute when operations overlap
(Zhu et al. 2024, NanoFlow, arXiv 2408.12757, §3). Attention FLOPs are left out, as in the paper.
Every prediction reports this optimum per GPU and the fraction of it the scenario reaches
(``simulator.metrics.optimal_tokens_per_s_per_gpu``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from simulator.techniques import Technique, register


@register
class NanoFlow(Technique):
    """Nano-batching: each operator of a step is split into ``nano_batches`` launches over slices of the
    batch so that compute-, memory- and network-bound operators of different slices run at once; the
    step then takes as long as its busiest resource (the ``overlapped`` policy) instead of the sum.

    The split is priced: launches (and their fixed overheads) multiply by n, GEMM weights are streamed
    once per nano-batch, and each launch is smaller (lower efficiency on the profile's curves).
    ``achievable_flops_per_s`` sets the GEMM rate the reported optimum assumes (the paper's 1857
    tokens/s/GPU for Llama-2-70B on A100 uses 260 TFLOP/s)."""

    name = "nanoflow"
    family = "batching"
    citation = "Zhu et al. 2024, NanoFlow: Towards Optimal Large Language Model Serving Throughput, arXiv 2408.12757"
    summary = "operators split into nano-batches that overlap: step = busiest resource; optimum = F / (2 P)"

    nano_batches: PositiveInt = Field(2, description="slices each operator's batch is split into")
    achievable_flops_per_s: PositiveFloat | None = Field(None, description="GEMM FLOP/s per GPU for the optimum; "
                                                         "none = the dense peak")

    def apply_deployment(self, dep):
        return replace(dep, achievable_flops_per_s=self.achievable_flops_per_s)

    def overlap_policy(self, policy: str) -> str:
        return "overlapped"

    def apply_ops(self, ops, shape, dep):
        n = float(self.nano_batches)
        if n == 1.0:
            return ops
        out = []
        for op in ops:
            if not getattr(op, "per_layer", False):
                out.append(op)
                continue
            weights = np.asarray(getattr(op, "weight_bytes", 0.0), dtype=float)
            rest = np.asarray(op.hbm_bytes, dtype=float) - weights
            out.append(replace(op, count=op.count * n, flops=np.asarray(op.flops, dtype=float) / n,
                               hbm_bytes=weights + rest / n, link_bytes=np.asarray(op.link_bytes, dtype=float) / n,
                               rows=np.asarray(op.rows, dtype=float) / n, input_elems=np.asarray(op.input_elems) / n,
                               kv_read_bytes=np.asarray(op.kv_read_bytes, dtype=float) / n))
        return out
