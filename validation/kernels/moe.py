"""Mixture-of-experts routing kernels: fused softmax + top-k, and the weighted sum back to token order.

The two memory-bound kernels a serving engine runs around a MoE layer's grouped expert GEMMs
(vLLM's ``topk_softmax`` and ``moe_unpermute``; MegaBlocks' routing and ``padded_scatter``), which
the step prices as ``moe.route`` and ``moe.unpermute`` (``costmodels.moe``):

* :func:`topk_softmax` — one program per token: softmax over the token's ``E`` router logits in
  fp32, the ``k`` largest selected by ``k`` rounds of max (ties go to the lower expert index), the
  selected probabilities written as fp32 routing weights (optionally renormalised to sum to 1) and
  their expert ids as int32;
* :func:`unpermute` — one pass over the expert outputs: ``out[t] = sum_j w[t, j] * y[pos[t, j]]``
  with fp32 accumulation, where ``pos[t, j]`` is the row of token ``t``'s ``j``-th expert output in
  the expert-sorted order.

Launchers take torch tensors (CUDA, or CPU under ``TRITON_INTERPRET=1``) and optional preallocated
outputs; ``*_ref`` compute the same with plain torch ops (float64 by default); ``*_cost`` give the
FLOPs and compulsory bytes as ``costmodels.moe`` counts them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from costmodels import moe as moe_cost

from ._common import (
    _FLOAT_DTYPES,
    check_device,
    check_last_dim_contiguous,
    check_out,
    check_tensor,
    element_size,
    require,
)

_INDEX_DTYPES = (torch.int32, torch.int64)
_MAX_EXPERTS = 8192  # one row of logits is held in registers

# --------------------------------------------------------------------------------------------------
# Fused softmax + top-k
# --------------------------------------------------------------------------------------------------


@triton.jit
def _topk_softmax_kernel(
    x_ptr, w_ptr, id_ptr, stride_x, n_experts,
    K: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr, RENORMALIZE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_E)
    valid = cols < n_experts
    x = tl.load(x_ptr + row * stride_x + cols, mask=valid, other=float("-inf")).to(tl.float32)
    m = tl.max(x, axis=0)
    denom = tl.sum(tl.where(valid, tl.exp(x - m), 0.0), axis=0)
    slots = tl.arange(0, BLOCK_K)
    top_x = tl.full((BLOCK_K,), float("-inf"), tl.float32)
    top_i = tl.zeros((BLOCK_K,), dtype=tl.int32)
    free = valid
    for j in range(K):
        # the largest logit not yet taken; among equal ones the lowest index (-inf logits included)
        best = tl.max(tl.where(free, x, float("-inf")), axis=0)
        idx = tl.min(tl.where(free & (x == best), cols, BLOCK_E), axis=0)
        top_x = tl.where(slots == j, best, top_x)
        top_i = tl.where(slots == j, idx, top_i)
        free = free & (cols != idx)
    keep = slots < K
    p = tl.where(keep, tl.exp(top_x - m), 0.0)
    if RENORMALIZE:
        w = p / tl.sum(p, axis=0)
    else:
        w = p / denom
    tl.store(w_ptr + row * K + slots, w, mask=keep)
    tl.store(id_ptr + row * K + slots, top_i, mask=keep)


def topk_softmax(
    logits: torch.Tensor,
    k: int,
    out_weights: torch.Tensor | None = None,
    out_ids: torch.Tensor | None = None,
    *,
    renormalize: bool = False,
    num_warps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing weights (T, k) fp32 and expert ids (T, k) int32 of router ``logits`` (T, E).

    Softmax over each row in fp32, the ``k`` largest probabilities in descending order (equal logits:
    the lower expert index first). ``renormalize=True`` divides the k weights by their sum (Mixtral,
    Qwen-MoE); False keeps the softmax probabilities (OLMoE). Selection is on the logits themselves,
    so it does not depend on the rounding of the probabilities. ``logits`` rows may be strided (last
    dimension contiguous); outputs must be contiguous.
    """
    check_tensor(logits, "logits", ndim=2, dtypes=_FLOAT_DTYPES)
    dev = check_device(("logits", logits))
    T, E = logits.shape
    require(E >= 1, "logits has no experts (empty last dimension)")
    require(E <= _MAX_EXPERTS, f"at most {_MAX_EXPERTS} experts, got {E}")
    require(isinstance(k, int) and 1 <= k <= E, f"k must be an integer in [1, {E}], got {k!r}")
    check_last_dim_contiguous(logits, "logits")
    check_out(out_weights, "out_weights", (T, k), torch.float32, dev)
    check_out(out_ids, "out_ids", (T, k), torch.int32, dev)
    if out_weights is None:
        out_weights = torch.empty((T, k), dtype=torch.float32, device=dev)
    if out_ids is None:
        out_ids = torch.empty((T, k), dtype=torch.int32, device=dev)
    require(out_weights.is_contiguous() and out_ids.is_contiguous(), "out_weights and out_ids must be contiguous")
    block_e = max(16, triton.next_power_of_2(E))
    if num_warps is None:
        num_warps = 1 if block_e <= 256 else 4 if block_e <= 2048 else 8
    if T:
        _topk_softmax_kernel[(T,)](
            logits, out_weights, out_ids, logits.stride(0), E,
            K=k, BLOCK_E=block_e, BLOCK_K=max(2, triton.next_power_of_2(k)), RENORMALIZE=bool(renormalize),
            num_warps=num_warps,
        )
    return out_weights, out_ids


def topk_softmax_ref(
    logits: torch.Tensor, k: int, renormalize: bool = False, compute_dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (in ``compute_dtype``) and int32 ids as :func:`topk_softmax` gives them: a stable
    descending sort of the logits picks the experts (equal logits: lower index first)."""
    x = logits.to(compute_dtype)
    probs = torch.softmax(x, dim=-1)
    ids = torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :k]
    w = probs.gather(-1, ids)
    if renormalize:
        w = w / w.sum(dim=-1, keepdim=True)
    return w, ids.to(torch.int32)


def topk_softmax_cost(tokens: int, experts: int, k: int, dtype: torch.dtype) -> dict:
    """T·E·(5 + k) FLOPs; the T·E logits read, T·k int32 ids and fp32 weights written."""
    flops, nbytes = moe_cost.route(tokens, experts, k, element_size(dtype))
    return {"flops": float(flops), "bytes": float(nbytes)}


# --------------------------------------------------------------------------------------------------
# Unpermute: each token's k expert rows, weighted and summed, in one pass
# --------------------------------------------------------------------------------------------------


@triton.jit
def _unpermute_kernel(
    y_ptr, w_ptr, pos_ptr, out_ptr, stride_y, stride_w, stride_p, stride_o, width,
    K: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    slots = tl.arange(0, BLOCK_K)
    smask = slots < K
    cmask = cols < width
    pos = tl.load(pos_ptr + t * stride_p + slots, mask=smask, other=0).to(tl.int64)
    w = tl.load(w_ptr + t * stride_w + slots, mask=smask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + pos[:, None] * stride_y + cols[None, :], mask=smask[:, None] & cmask[None, :], other=0.0)
    acc = tl.sum(y.to(tl.float32) * w[:, None], axis=0)
    tl.store(out_ptr + t * stride_o + cols, acc.to(out_ptr.dtype.element_ty), mask=cmask)


_UNPERMUTE_TILE = 4096  # elements of expert rows loaded per program (k rows x BLOCK_H columns)


def unpermute(
    expert_out: torch.Tensor,
    weights: torch.Tensor,
    inverse_index: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    block_size: int | None = None,
    num_warps: int = 4,
) -> torch.Tensor:
    """``out[t] = sum_j weights[t, j] * expert_out[inverse_index[t, j]]`` in one pass, fp32 sums.

    ``expert_out`` (T·k, h): the expert outputs in expert-sorted order; ``weights`` (T, k) routing
    weights (any float dtype, fp32 as :func:`topk_softmax` writes them); ``inverse_index`` (T, k)
    int32 or int64: the row of ``expert_out`` that holds token t's j-th expert (every entry in
    [0, T·k); not checked on the device). Output (T, h) in ``expert_out``'s dtype. One program per
    (token, ``block_size`` columns); default ``block_size`` keeps k × block_size near 4096 elements.
    """
    check_tensor(expert_out, "expert_out", ndim=2, dtypes=_FLOAT_DTYPES)
    check_tensor(weights, "weights", ndim=2, dtypes=_FLOAT_DTYPES)
    check_tensor(inverse_index, "inverse_index", ndim=2, dtypes=_INDEX_DTYPES)
    dev = check_device(("expert_out", expert_out), ("weights", weights), ("inverse_index", inverse_index))
    T, k = weights.shape
    require(k >= 1, "weights has no experts per token (empty last dimension)")
    require(tuple(inverse_index.shape) == (T, k),
            f"inverse_index has shape {tuple(inverse_index.shape)} but weights has shape {(T, k)}")
    rows, width = expert_out.shape
    require(rows == T * k, f"expert_out has {rows} rows; expected tokens x k = {T} x {k} = {T * k}")
    for name, t in (("expert_out", expert_out), ("weights", weights), ("inverse_index", inverse_index)):
        check_last_dim_contiguous(t, name)
    check_out(out, "out", (T, width), expert_out.dtype, dev)
    if out is None:
        out = torch.empty((T, width), dtype=expert_out.dtype, device=dev)
    check_last_dim_contiguous(out, "out")
    block_k = max(2, triton.next_power_of_2(k))  # no size-1 tiles
    if block_size is None:
        block_size = min(triton.next_power_of_2(max(width, 1)), max(16, _UNPERMUTE_TILE // block_k))
    require(triton.next_power_of_2(block_size) == block_size, f"block_size must be a power of two, got {block_size}")
    if T and width:
        grid = (T, triton.cdiv(width, block_size))
        _unpermute_kernel[grid](
            expert_out, weights, inverse_index, out,
            expert_out.stride(0), weights.stride(0), inverse_index.stride(0), out.stride(0), width,
            K=k, BLOCK_K=block_k, BLOCK_H=block_size, num_warps=num_warps,
        )
    return out


def unpermute_ref(
    expert_out: torch.Tensor, weights: torch.Tensor, inverse_index: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    y = expert_out.to(compute_dtype)[inverse_index.long()]  # (T, k, h)
    return (weights.to(compute_dtype).unsqueeze(-1) * y).sum(dim=1)


def unpermute_cost(tokens: int, k: int, width: int, dtype: torch.dtype) -> dict:
    """2·T·k·h FLOPs; T·k rows read with an int32 index and an fp32 weight each, T rows written."""
    flops, nbytes = moe_cost.unpermute(tokens, k, width, element_size(dtype))
    return {"flops": float(flops), "bytes": float(nbytes)}
