"""FLOPs and HBM bytes of the kernels around a mixture-of-experts layer's grouped expert GEMMs.

Between the router GEMM and the experts, and after them, an engine runs:

* **route**: softmax over each token's ``E`` router logits and top-k selection, one fused kernel
  (vLLM's ``topk_softmax``, ``csrc/moe/topk_softmax_kernels.cu``): reads the T·E logits, writes
  T·k expert ids (int32) and T·k routing weights (fp32);
* **sort**: the (token, expert) pairs sorted by expert, with each expert's offset into the sorted
  order (vLLM's ``moe_align_block_size``, ``csrc/moe/moe_align_sum_kernels.cu``; MegaBlocks' sort,
  histogram and cumulative sum, Gale et al. 2022, arXiv 2211.15841, §5): reads the T·k ids, writes
  T·k sorted pair indices and E + 1 offsets;
* **permute**: each token's hidden row gathered once per chosen expert into expert order
  (MegaBlocks' ``padded_gather``; vLLM's ``moe_permute``, ``csrc/moe/moe_permute_unpermute_op.cu``):
  T·k rows written. The T source rows are read once from HBM: a row's other k - 1 copies hit the
  L2 cache, which holds the source rows at a step's token counts (the compulsory-traffic convention
  of ``costmodels.gemm``; 4096 tokens gathered on an H100 take 70 µs, faster than re-reading every
  copy from HBM could be);
* **unpermute**: every expert output row scaled by its routing weight and summed into its token's
  row (MegaBlocks' ``padded_scatter``; vLLM's ``moe_unpermute``, or ``moe_sum`` after a down GEMM
  that applied the weights): reads T·k rows with their indices and weights, writes T rows.

Each is a memory-bound kernel: bytes are the compulsory traffic, FLOPs the arithmetic (small).
Indices are int32 and routing weights fp32, as in those engines. ``expected_distinct_experts`` is how
many experts' weights a batch reads.
"""

from __future__ import annotations


from costmodels.numeric import num
INDEX_BYTES = 4.0  # int32 expert ids, pair indices and offsets
ROUTING_WEIGHT_BYTES = 4.0  # fp32 routing weights
# softmax: max, subtract, exp, sum, divide per logit; top-k: one comparison per logit per selected expert
SOFTMAX_FLOPS_PER_ELEMENT = 5.0


def route(tokens, experts, top_k, logit_bytes):
    """(flops, bytes) of the fused softmax + top-k over T×E logits."""
    t = num(tokens)
    flops = t * experts * (SOFTMAX_FLOPS_PER_ELEMENT + top_k)
    nbytes = t * experts * logit_bytes + t * top_k * (INDEX_BYTES + ROUTING_WEIGHT_BYTES)
    return flops, nbytes


def sort(tokens, experts, top_k):
    """(flops, bytes) of sorting the T·k (token, expert) pairs by expert and writing the E + 1 offsets."""
    pairs = num(tokens) * top_k
    return 0.0 * pairs, pairs * 2 * INDEX_BYTES + (experts + 1) * INDEX_BYTES


def permute(tokens, top_k, width, act_bytes):
    """(flops, bytes) of gathering T·k rows of ``width`` into expert order: T rows read, T·k written,
    one index per written row."""
    t = num(tokens)
    return 0.0 * t, t * width * act_bytes + t * top_k * (width * act_bytes + INDEX_BYTES)


def unpermute(tokens, top_k, width, act_bytes):
    """(flops, bytes) of the weighted sum of each token's k expert rows: T·k rows read with their
    index and weight, T rows written; a multiply and an add per element read."""
    t = num(tokens)
    flops = 2.0 * t * top_k * width
    nbytes = t * top_k * (width * act_bytes + INDEX_BYTES + ROUTING_WEIGHT_BYTES) + t * width * act_bytes
    return flops, nbytes


def expected_distinct_experts(tokens, num_experts: int, top_k: int):
    """Expected number of experts at least one of ``tokens`` is routed to, under uniform top-k routing:
    E·(1 - (1 - k/E)^T). Each expert misses a token with probability 1 - k/E, independently per token."""
    t = tokens if isinstance(tokens, float) else num(tokens)
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** t)
