"""Split-K (flash-decoding) attention over a KV cache: one new token per sequence.

Layout: ``q (B, H, D)``, ``k_cache, v_cache (B, Hkv, S_max, D)`` (last dimension contiguous, other
strides free), ``context_lens`` an int or a ``(B,)`` integer tensor; output ``(B, H, D)``. The context
is cut into splits; each program reduces one split of one (sequence, KV head) for all the query heads
that share it (GQA) and writes a partial output and its log-sum-exp; a second kernel combines them.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import triton
import triton.language as tl

from ._common import (
    _FLOAT_DTYPES,
    check_device,
    check_last_dim_contiguous,
    check_out,
    check_tensor,
    dot_precision,
    element_size,
    interpreter_active,
    interpreter_upcast_dot,
    is_pow2,
    num_sms,
    parse_config,
    require,
)

from .attention import _LOG2E, _check_gqa, _check_head_dim, _online_softmax_step, _scores


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    BLOCK_N: int = 64
    num_warps: int = 4
    num_stages: int = 2

    def validate(self) -> None:
        require(
            is_pow2(self.BLOCK_N) and self.BLOCK_N >= 16,
            f"DecodeConfig.BLOCK_N must be a power of two >= 16, got {self.BLOCK_N}",
        )
        require(is_pow2(self.num_warps), f"DecodeConfig.num_warps must be a power of two, got {self.num_warps}")
        require(self.num_stages >= 1, f"DecodeConfig.num_stages must be >= 1, got {self.num_stages}")


@triton.jit
def _decode_split_kernel(
    q_ptr, k_ptr, v_ptr, lens_ptr, po_ptr, plse_ptr,
    stride_qb, stride_qh,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_pob, stride_poh, stride_pos,
    stride_plb, stride_plh,
    ctx_len, split_size, group, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, LENS_IN_TENSOR: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    # One program = one (sequence, KV head, split): the `group` query heads sharing this KV head are
    # stacked as the rows of one tile, so each K/V block is read once for all of them.
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    if LENS_IN_TENSOR:
        seq_len = tl.load(lens_ptr + b).to(tl.int32)
    else:
        seq_len = ctx_len
    start = split * split_size
    end = tl.minimum(start + split_size, seq_len)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, HEAD_DIM)
    heads = kvh * group + offs_g
    g_mask = offs_g < group
    q_ptrs = q_ptr + b.to(tl.int64) * stride_qb + heads[:, None].to(tl.int64) * stride_qh + offs_d[None, :]
    q = tl.load(q_ptrs, mask=g_mask[:, None], other=0.0)
    k_base = k_ptr + b.to(tl.int64) * stride_kb + kvh.to(tl.int64) * stride_kh
    v_base = v_ptr + b.to(tl.int64) * stride_vb + kvh.to(tl.int64) * stride_vh

    m_i = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_G,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_G, HEAD_DIM), dtype=tl.float32)
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(start, end, BLOCK_N):
        offs_n = start_n + offs_n0
        n_mask = offs_n < end
        k = tl.load(k_base + offs_n[:, None].to(tl.int64) * stride_kn + offs_d[None, :], mask=n_mask[:, None], other=0.0)
        v = tl.load(v_base + offs_n[:, None].to(tl.int64) * stride_vn + offs_d[None, :], mask=n_mask[:, None], other=0.0)
        qk = tl.where(n_mask[None, :], _scores(q, k, INPUT_PRECISION, UPCAST_DOT) * qk_scale, float("-inf"))
        acc, l_i, m_i = _online_softmax_step(qk, v, acc, l_i, m_i, INPUT_PRECISION, UPCAST_DOT)

    # An empty split (start >= seq_len) writes out = 0, lse = -inf: it gets zero weight when combined.
    nonempty = l_i > 0.0
    out = tl.where(nonempty[:, None], acc / tl.where(nonempty, l_i, 1.0)[:, None], 0.0)
    lse = tl.where(nonempty, m_i + tl.math.log2(tl.where(nonempty, l_i, 1.0)), float("-inf"))  # log2 units
    po_ptrs = (
        po_ptr + b.to(tl.int64) * stride_pob + heads[:, None].to(tl.int64) * stride_poh
        + split * stride_pos + offs_d[None, :]
    )
    tl.store(po_ptrs, out, mask=g_mask[:, None])
    tl.store(plse_ptr + b.to(tl.int64) * stride_plb + heads.to(tl.int64) * stride_plh + split, lse, mask=g_mask)


@triton.jit
def _decode_combine_kernel(
    po_ptr, plse_ptr, o_ptr,
    stride_pob, stride_poh, stride_pos,
    stride_plb, stride_plh,
    stride_ob, stride_oh,
    n_heads, n_splits,
    HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr,
):
    bh = tl.program_id(0)
    b = bh // n_heads
    h = bh % n_heads
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, HEAD_DIM)
    s_mask = offs_s < n_splits
    lse = tl.load(
        plse_ptr + b.to(tl.int64) * stride_plb + h.to(tl.int64) * stride_plh + offs_s, mask=s_mask, other=float("-inf")
    )
    m = tl.max(lse, 0)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    w = tl.where(lse == float("-inf"), 0.0, tl.math.exp2(lse - m_safe))
    po = tl.load(
        po_ptr + b.to(tl.int64) * stride_pob + h.to(tl.int64) * stride_poh
        + offs_s[:, None] * stride_pos + offs_d[None, :],
        mask=s_mask[:, None], other=0.0,
    )
    denom = tl.sum(w, 0)
    out = tl.sum(po * w[:, None], 0) / tl.where(denom > 0.0, denom, 1.0)
    tl.store(o_ptr + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh + offs_d, out.to(o_ptr.dtype.element_ty))


def decode_num_splits(batch: int, n_kv_heads: int, max_context_len: int, device: torch.device, block_n: int = 64) -> int:
    """Default split count: enough (sequence, KV head, split) programs to fill the GPU about twice."""
    max_useful = max(1, triton.cdiv(max_context_len, block_n))
    target = 2 * num_sms(device)
    return max(1, min(max_useful, triton.cdiv(target, max(1, batch * n_kv_heads)), 128))


def decode_workspace(
    batch: int, n_heads: int, head_dim: int, num_splits: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 buffers for the per-split partial outputs ``(B, H, splits, D)`` and log-sum-exps ``(B, H, splits)``."""
    po = torch.empty((batch, n_heads, num_splits, head_dim), dtype=torch.float32, device=device)
    plse = torch.empty((batch, n_heads, num_splits), dtype=torch.float32, device=device)
    return po, plse


def decode_split_layout(max_len: int, num_splits: int, block_n: int = 64) -> tuple[int, int]:
    """(split_size, actual number of splits) for ``num_splits`` requested splits of ``max_len`` positions."""
    split_size = triton.cdiv(triton.cdiv(max(max_len, 1), num_splits), block_n) * block_n
    return split_size, max(1, triton.cdiv(max(max_len, 1), split_size))


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    context_lens: int | torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    sm_scale: float | None = None,
    num_splits: int | None = None,
    max_context_len: int | None = None,
    config: DecodeConfig | dict | str | None = None,
    workspace: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One-token attention per sequence over the first ``context_lens[b]`` cache positions.

    Flash-decoding: the context is cut into ``num_splits`` splits of ``split_size`` positions (a
    multiple of BLOCK_N); each (sequence, KV head, split) program writes a partial output and its
    log-sum-exp, and a second kernel combines the splits. ``max_context_len`` (default: the scalar
    ``context_lens``, else ``context_lens.max()``, one device sync) sets the split size; pass it to
    keep a timing loop free of syncs. It must be >= every entry of ``context_lens``: a tensor's
    entries are then not checked, and positions past it would be skipped. ``workspace``: buffers
    from :func:`decode_workspace`, reused if given. Entries of ``context_lens`` equal to 0 give a
    zero output row.
    """
    check_tensor(q, "q", dtypes=_FLOAT_DTYPES)
    check_tensor(k_cache, "k_cache", ndim=4, dtypes=_FLOAT_DTYPES)
    check_tensor(v_cache, "v_cache", ndim=4, dtypes=_FLOAT_DTYPES)
    q_shape = tuple(q.shape)
    if q.dim() == 4:
        require(q.shape[2] == 1, f"decode q must be (B, H, D) or (B, H, 1, D), got {q_shape}")
        q = q[:, :, 0, :]
    require(q.dim() == 3, f"decode q must be (B, H, D) or (B, H, 1, D), got {q_shape}")
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        check_last_dim_contiguous(t, name)
    dev = check_device(("q", q), ("k_cache", k_cache), ("v_cache", v_cache))
    require(
        q.dtype == k_cache.dtype == v_cache.dtype,
        f"q, k_cache, v_cache dtypes differ: {q.dtype}, {k_cache.dtype}, {v_cache.dtype}",
    )
    B, H, D = q.shape
    require(
        k_cache.shape == v_cache.shape,
        f"k_cache has shape {tuple(k_cache.shape)} but v_cache has shape {tuple(v_cache.shape)}",
    )
    Bk, Hkv, S_max, Dk = k_cache.shape
    require(Bk == B, f"batch differs: q has {B}, the cache has {Bk}")
    require(Dk == D, f"head_dim differs: q has {D}, the cache has {Dk}")
    _check_head_dim(D)
    group = _check_gqa(H, Hkv)

    if isinstance(context_lens, torch.Tensor):
        require(
            context_lens.dim() == 1 and context_lens.shape[0] == B,
            f"context_lens must have shape ({B},), got {tuple(context_lens.shape)}",
        )
        require(
            not context_lens.dtype.is_floating_point and context_lens.dtype != torch.bool,
            f"context_lens must be integer, got {context_lens.dtype}",
        )
        require(context_lens.device == dev, f"context_lens is on {context_lens.device}, expected {dev}")
        lens_tensor, ctx_scalar = context_lens.contiguous(), 0
        if max_context_len is None:
            lo, hi = int(context_lens.min()), int(context_lens.max())
            require(
                lo >= 0 and hi <= S_max,
                f"context_lens must lie in [0, {S_max}] (the cache length), got [{lo}, {hi}]",
            )
            max_context_len = hi
    else:
        ctx_scalar = int(context_lens)
        require(0 <= ctx_scalar <= S_max, f"context length {ctx_scalar} outside [0, {S_max}] (the cache length)")
        lens_tensor = None
        if max_context_len is None:
            max_context_len = ctx_scalar
        require(max_context_len >= ctx_scalar, f"max_context_len {max_context_len} < context length {ctx_scalar}")
    require(0 <= max_context_len <= S_max, f"max_context_len {max_context_len} outside [0, {S_max}]")

    out_shape = q_shape
    check_out(out, "out", out_shape, q.dtype, dev)
    if out is None:
        out = torch.empty(out_shape, dtype=q.dtype, device=dev)
    o3 = out if out.dim() == 3 else out[:, :, 0, :]
    check_last_dim_contiguous(o3, "out")
    if B == 0 or H == 0:
        return out

    cfg = parse_config(DecodeConfig, config) if config is not None else (
        DecodeConfig(16, 4, 1) if interpreter_active() else DecodeConfig()
    )
    if num_splits is None:
        num_splits = decode_num_splits(B, Hkv, max_context_len, dev, cfg.BLOCK_N)
    require(num_splits >= 1, f"num_splits must be >= 1, got {num_splits}")
    split_size, n_splits = decode_split_layout(max_context_len, num_splits, cfg.BLOCK_N)
    if workspace is None:
        po, plse = decode_workspace(B, H, D, n_splits, dev)
    else:
        po, plse = workspace
        require(
            tuple(po.shape) == (B, H, n_splits, D) and tuple(plse.shape) == (B, H, n_splits),
            f"workspace shapes {tuple(po.shape)}, {tuple(plse.shape)} != {(B, H, n_splits, D)}, {(B, H, n_splits)}",
        )
        require(po.dtype == plse.dtype == torch.float32, "workspace buffers must be float32")
        require(po.device == dev and plse.device == dev, f"workspace must be on {dev}")
        require(po.stride(-1) == 1 and plse.stride(-1) == 1, "workspace buffers must be contiguous in the last dimension")
    sm_scale = 1.0 / math.sqrt(D) if sm_scale is None else float(sm_scale)

    _decode_split_kernel[(B, Hkv, n_splits)](
        q, k_cache, v_cache, lens_tensor if lens_tensor is not None else q, po, plse,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        po.stride(0), po.stride(1), po.stride(2),
        plse.stride(0), plse.stride(1),
        ctx_scalar, split_size, group, sm_scale * _LOG2E,
        HEAD_DIM=D, BLOCK_G=max(16, triton.next_power_of_2(group)), BLOCK_N=cfg.BLOCK_N,
        LENS_IN_TENSOR=lens_tensor is not None,
        INPUT_PRECISION=dot_precision(q.dtype, False), UPCAST_DOT=interpreter_upcast_dot(q.dtype),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    _decode_combine_kernel[(B * H,)](
        po, plse, o3,
        po.stride(0), po.stride(1), po.stride(2),
        plse.stride(0), plse.stride(1),
        o3.stride(0), o3.stride(1),
        H, n_splits,
        HEAD_DIM=D, BLOCK_S=triton.next_power_of_2(n_splits), num_warps=4,
    )
    return out


def decode_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    context_lens: int | torch.Tensor,
    *,
    sm_scale: float | None = None,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Per sequence, SDPA of its one query against the first ``context_lens[b]`` cache positions."""
    squeeze = q.dim() == 3
    q4 = q.unsqueeze(2) if squeeze else q
    B, H, _, D = q4.shape
    Hkv = k_cache.shape[1]
    if isinstance(context_lens, torch.Tensor):
        lens = [int(x) for x in context_lens.tolist()]
    else:
        lens = [int(context_lens)] * B
    scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    out = torch.zeros((B, H, 1, D), dtype=compute_dtype, device=q.device)
    for b, L in enumerate(lens):
        if L == 0:
            continue
        kb = k_cache[b : b + 1, :, :L].to(compute_dtype).repeat_interleave(H // Hkv, dim=1)
        vb = v_cache[b : b + 1, :, :L].to(compute_dtype).repeat_interleave(H // Hkv, dim=1)
        qb = q4[b : b + 1].to(compute_dtype)
        out[b : b + 1] = torch.nn.functional.scaled_dot_product_attention(qb, kb, vb, scale=scale)
    return out[:, :, 0] if squeeze else out


def decode_attention_cost(
    batch: int, n_heads: int, n_kv_heads: int, context_len: int, head_dim: int, dtype: torch.dtype
) -> dict:
    """4·B·H·L·D FLOPs; bytes dominated by the K and V cache reads (2·B·Hkv·L·D elements)."""
    e = element_size(dtype)
    flops = 4 * batch * n_heads * context_len * head_dim
    nbytes = e * (2 * batch * n_kv_heads * context_len * head_dim + 2 * batch * n_heads * head_dim)
    return {"flops": flops, "bytes": nbytes}
