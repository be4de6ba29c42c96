"""Implementations read off the code of the stacks roofsim knows, for ``--structure`` (the fit starts
from one and fits only the continuous corrections; ``fused`` is roofsim's own kernel set).

Launches and HBM bytes per element are counted for bf16 activations (2 bytes; scaled for others):

* RMSNorm in fp32 (transformers' ``LlamaRMSNorm``; ``validation.stacks.unfused``): ``to(fp32)`` 2 + 4,
  ``pow`` 4 + 4, ``mean`` 4, ``+ eps`` and ``rsqrt`` on one value per row, ``x * rsqrt`` 4 + 4,
  ``to(bf16)`` 4 + 2, ``weight *`` 2 + 2: 8 launches, 36 bytes per element (a fused kernel: 1 and 4);
* rotary by ``rotate_half`` on q and on k: ``x * cos`` 2 + 2, ``-x2`` 1 + 1, ``cat`` 2 + 2,
  ``* sin`` 2 + 2, ``+`` 4 + 2: 5 launches per tensor (10 for q and k), 20 bytes per element (fused: 4);
* ``silu(gate) * up``: ``silu`` 2 + 2, ``*`` 4 + 2: 2 launches, 10 bytes per intermediate element
  (fused SwiGLU: 6).

MoE layers (:class:`~simulator.stacks.profile.MoEImplementation`), S = tokens x top-k routed rows:

* ``torch-unfused`` (``validation.stacks.unfused.Layer._moe``): routing in torch ops, the rows gathered by
  ``index_select``, three ``torch._grouped_mm`` (gate, up, down), then ``y * w`` (S x hidden, 2 + 2 bytes),
  ``zeros_like`` (tokens x hidden, 2) and ``index_add_`` back to token order (S x hidden, atomics:
  2 read + 2 updated), which replaces roofsim's fused weighted sum;
* ``hf-*`` (transformers 5.17 ``MixtralTopKRouter`` and ``integrations.moe.grouped_mm_experts_forward``,
  the experts implementation transformers picks by default; OLMoE's experts are Mixtral's class): three
  ``masked_fill`` over the sorted rows (S x hidden in place, S x 2 intermediate, S x hidden; 2 + 2
  bytes, broadcast mask: strided), the routing weights applied in fp32 (``bf16 * fp32``: 2 + 4, strided),
  the inverse permutation gathered in fp32 (4 + 4), the sum over the k rows of each token in fp32 (S x
  hidden read, 4; tokens x hidden written, 4) and the cast back (tokens x hidden, 4 + 2).

Kernels beyond the priced ones (``layer_extra_launches``, ``MoEImplementation.extra_launches_*``) are the
census of each stack's steps on the H200 (``python -m validation.stacks.census``, in
``validation/results/stacks/census/*.json``: launches of llama-3.2-1b and olmoe-1b-7b steps minus those
roofsim prices for the same steps, per layer; docs/calibration.md).
"""

from __future__ import annotations

from simulator.stacks.profile import Elementwise, FixedCosts, Implementation, MoEImplementation, RowPass

_UNFUSED_ELEMENTWISE = dict(norm=Elementwise(launches=8, bytes_per_element=36.0),
                            rotary=Elementwise(launches=10, bytes_per_element=20.0),
                            activation=Elementwise(launches=2, bytes_per_element=10.0))

# Training: autograd of the fp32 RMSNorm saves its fp32 input (4 bytes) and the bf16 normalised tensor (2)
# for the weight product, where a fused norm saves its bf16 input (2): +4 per norm, two per layer = 8 per
# hidden element; ``silu(gate) * up`` saves gate, silu(gate) and up (6 per intermediate element) where a
# fused SwiGLU saves gate and up (4): +2; the MoE's weight product saves its bf16 rows (2 per hidden
# element of a routed row: ``y * w`` here, ``proj_out * weights`` in transformers, whose norm and MLP are the
# same code).
_UNFUSED_SAVED = dict(train_saved_hidden_bytes=8.0, train_saved_intermediate_bytes=2.0, train_saved_routed_bytes=2.0)
# A training step's kernels beyond the priced forward and backward operators (autograd's accumulations,
# the reductions of broadcast gradients, casts), per layer and per MoE layer: the census of the
# torch-unfused llama-3.2-1b and olmoe-1b-7b steps at 1 x 1024 (2,096 and 3,614 kernels, against 1,416 and
# 2,152 priced: 42.5 per layer, and 49 more per MoE layer).
_UNFUSED_TRAIN_LAUNCHES = 42.5
_UNFUSED_MOE_TRAIN_LAUNCHES = 49.0

_TORCH_MOE = dict(passes=[RowPass(name="weight", bytes_per_element=4.0),
                          RowPass(name="combine.zero", rows="tokens", bytes_per_element=2.0),
                          RowPass(name="combine.index_add", bytes_per_element=4.0, kind="atomic")],
                  replaces_combine=True)
_HF_MOE = dict(passes=[RowPass(name="mask.rows", bytes_per_element=4.0, kind="strided"),
                       RowPass(name="mask.gate_up", width="expert_gate_up", bytes_per_element=4.0, kind="strided"),
                       RowPass(name="mask.down", bytes_per_element=4.0, kind="strided"),
                       RowPass(name="weight.fp32", bytes_per_element=6.0, kind="strided"),
                       RowPass(name="unsort.fp32", bytes_per_element=8.0),
                       RowPass(name="combine.sum.fp32", bytes_per_element=4.0),
                       RowPass(name="combine.sum_out.fp32", rows="tokens", bytes_per_element=4.0),
                       RowPass(name="combine.cast", rows="tokens", bytes_per_element=6.0)],
               replaces_combine=True)

STRUCTURES: dict[str, tuple[Implementation, FixedCosts]] = {
    "fused": (Implementation(), FixedCosts(execution="graph")),
    "torch-unfused": (Implementation(**_UNFUSED_ELEMENTWISE, separate_qkv=True, separate_gate_up=True,
                                     separate_expert_gate_up=True, attention_output_copy=True,
                                     layer_extra_launches=2.0, **_UNFUSED_SAVED,
                                     train_layer_extra_launches=_UNFUSED_TRAIN_LAUNCHES,
                                     moe=MoEImplementation(**_TORCH_MOE, extra_launches_small_sort=16.0,
                                                           extra_launches_radix_sort=32.0,
                                                           train_extra_launches=_UNFUSED_MOE_TRAIN_LAUNCHES)),
                      FixedCosts(execution="eager")),
    # transformers 5 Llama / Mixtral, DynamicCache, no mask: SDPA with is_causal / enable_gqa
    "hf-eager": (Implementation(**_UNFUSED_ELEMENTWISE, separate_qkv=True, separate_gate_up=True,
                                attention_output_copy=True, kv_append="concat", layer_extra_launches=1.5, **_UNFUSED_SAVED,
                                moe=MoEImplementation(**_HF_MOE, extra_launches_small_sort=22.0,
                                                      extra_launches_radix_sort=38.0)),
                 FixedCosts(execution="eager")),
    # StaticCache under CUDA-graph capture: the causal mask is materialised, K/V repeated per query head
    "hf-graph": (Implementation(**_UNFUSED_ELEMENTWISE, separate_qkv=True, separate_gate_up=True,
                                attention_output_copy=True, gqa_expand_kv="always", materialized_mask="always",
                                layer_extra_launches=9.5, **_UNFUSED_SAVED,
                                moe=MoEImplementation(**_HF_MOE, extra_launches_small_sort=21.0,
                                                      extra_launches_radix_sort=37.0)),
                 FixedCosts(execution="graph")),
}
