"""Implementations read off the code of the stacks roofsim knows, for ``--structure`` (the fit starts
from one and fits only the continuous corrections; ``fused`` is roofsim's own kernel set).

Launches and HBM bytes per element are counted for bf16 activations (2 bytes; scaled for others):

* RMSNorm in fp32 (transformers' ``LlamaRMSNorm``; ``validation.stacks.unfused``): ``to(fp32)`` 2 + 4,
  ``pow`` 4 + 4, ``mean`` 4, ``+ eps`` and ``rsqrt`` on one value per row, ``x * rsqrt`` 4 + 4,
  ``to(bf16)`` 4 + 2, ``weight *`` 2 + 2: 8 launches, 36 bytes per element (a fused kernel: 1 and 4);
* rotary by ``rotate_half`` on q and on k: ``x * cos`` 2 + 2, ``-x2`` 1 + 1, ``cat`` 2 + 2,
  ``* sin`` 2 + 2, ``+`` 4 + 2: 5 launches per tensor (10 for q and k), 20 bytes per element (fused: 4);
* ``silu(gate) * up``: ``silu`` 2 + 2, ``*`` 4 + 2: 2 launches, 10 bytes per intermediate element
  (fused SwiGLU: 6);
* MoE routing in torch (softmax in fp32, top-k, renormalise, stable sort, searchsorted, a division):
  about 6 launches for the route and sort operators (fused: 1 each).
"""

from __future__ import annotations

from simulator.stacks.profile import Elementwise, FixedCosts, Implementation

_UNFUSED_ELEMENTWISE = dict(norm=Elementwise(launches=8, bytes_per_element=36.0),
                            rotary=Elementwise(launches=10, bytes_per_element=20.0),
                            activation=Elementwise(launches=2, bytes_per_element=10.0))

STRUCTURES: dict[str, tuple[Implementation, FixedCosts]] = {
    "fused": (Implementation(), FixedCosts(execution="graph")),
    "torch-unfused": (Implementation(**_UNFUSED_ELEMENTWISE, separate_qkv=True, separate_gate_up=True,
                                     separate_expert_gate_up=True, attention_output_copy=True,
                                     moe_routing_launches=6), FixedCosts(execution="eager")),
    # transformers 5 Llama / Mixtral, DynamicCache, no mask: SDPA with is_causal / enable_gqa
    "hf-eager": (Implementation(**_UNFUSED_ELEMENTWISE, separate_qkv=True, separate_gate_up=True,
                                attention_output_copy=True, kv_append="concat", moe_routing_launches=6),
                 FixedCosts(execution="eager")),
    # StaticCache under CUDA-graph capture: the causal mask is materialised, K/V repeated per query head
    "hf-graph": (Implementation(**_UNFUSED_ELEMENTWISE, separate_qkv=True, separate_gate_up=True,
                                attention_output_copy=True, gqa_expand_kv="always", materialized_mask="always",
                                moe_routing_launches=6), FixedCosts(execution="graph")),
}
