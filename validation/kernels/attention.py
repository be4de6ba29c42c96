"""Fused causal attention for prefill, FlashAttention-2 style (split-K decode is in ``decode_attention``).

Layout (last dimension contiguous, other strides free): ``q (B, H, Sq, D)``, ``k, v (B, Hkv, Sk, D)``,
output like ``q``.

GQA: ``H`` must be a multiple of ``Hkv``; query head ``h`` reads KV head ``h // (H // Hkv)``.
``D`` must be a power of two in [16, 256] (64 and 128 are the models' sizes). Softmax statistics
and accumulation are fp32; P is rounded to the input dtype before the P·V product, as on tensor cores.
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
    parse_config,
    require,
)

_LOG2E = 1.4426950408889634


def _check_head_dim(d: int) -> None:
    require(is_pow2(d) and 16 <= d <= 256, f"head_dim must be a power of two in [16, 256], got {d}")


# ==================================================================================================
# Prefill: causal (or full) attention forward
# ==================================================================================================


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    BLOCK_M: int = 128
    BLOCK_N: int = 64
    num_warps: int = 8
    num_stages: int = 3

    def validate(self) -> None:
        for name in ("BLOCK_M", "BLOCK_N"):
            v = getattr(self, name)
            require(is_pow2(v) and v >= 16, f"AttentionConfig.{name} must be a power of two >= 16, got {v}")
        require(is_pow2(self.num_warps), f"AttentionConfig.num_warps must be a power of two, got {self.num_warps}")
        require(self.num_stages >= 1, f"AttentionConfig.num_stages must be >= 1, got {self.num_stages}")


def default_attention_config(head_dim: int) -> AttentionConfig:
    if interpreter_active():
        return AttentionConfig(16, 16, 4, 1)
    if head_dim <= 64:
        return AttentionConfig(128, 64, 4, 3)
    return AttentionConfig(128, 64, 8, 3)


@triton.jit
def _scores(q, k, INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """Q·Kᵀ for one tile of keys (fp32 accumulate; operands upcast only under the interpreter)."""
    kt = tl.trans(k)
    if UPCAST_DOT:
        return tl.dot(q.to(tl.float32), kt.to(tl.float32), input_precision=INPUT_PRECISION)
    return tl.dot(q, kt, input_precision=INPUT_PRECISION)


@triton.jit
def _online_softmax_step(qk, v, acc, l_i, m_i, INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """Fold one tile of (log2-scaled) scores into the running max, sum and P·V (FlashAttention-2,
    Dao 2023, Algorithm 1): rescale what is accumulated by exp2(m_old - m_new), add the new tile."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(qk - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    p = p.to(v.dtype)
    if UPCAST_DOT:
        acc = tl.dot(p.to(tl.float32), v.to(tl.float32), acc, input_precision=INPUT_PRECISION)
    else:
        acc = tl.dot(p, v, acc, input_precision=INPUT_PRECISION)
    return acc, l_i, m_new


@triton.jit
def _attn_fwd_inner(
    acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m, offs_d,
    lo, hi, seq_k, causal_shift, qk_scale,
    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        k_ptrs = k_base + offs_n[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = v_base + offs_n[:, None] * stride_vn + offs_d[None, :]
        if MASKED:
            kv_mask = offs_n[:, None] < seq_k
            k = tl.load(k_ptrs, mask=kv_mask, other=0.0)
            v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        qk = _scores(q, k, INPUT_PRECISION, UPCAST_DOT) * qk_scale
        if MASKED:
            valid = offs_n[None, :] < seq_k
            if CAUSAL:
                valid = valid & (offs_m[:, None] + causal_shift >= offs_n[None, :])
            qk = tl.where(valid, qk, float("-inf"))
        acc, l_i, m_i = _online_softmax_step(qk, v, acc, l_i, m_i, INPUT_PRECISION, UPCAST_DOT)
    return acc, l_i, m_i


@triton.jit
def _attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om,
    n_heads, seq_q, seq_k, group, causal_shift, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    kvh = h // group

    q_base = q_ptr + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    k_base = k_ptr + b.to(tl.int64) * stride_kb + kvh.to(tl.int64) * stride_kh
    v_base = v_ptr + b.to(tl.int64) * stride_vb + kvh.to(tl.int64) * stride_vh
    o_base = o_ptr + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_mask = offs_m[:, None] < seq_q
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :], mask=q_mask, other=0.0)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)

    # Key blocks [0, full) are visible to every row of this tile and lie inside seq_k: no masking.
    # Blocks [full, hi) straddle the causal diagonal or the end of the sequence: masked.
    if CAUSAL:
        hi = tl.minimum(seq_k, (start_m + 1) * BLOCK_M + causal_shift)
        full = (tl.minimum(seq_k, start_m * BLOCK_M + causal_shift + 1) // BLOCK_N) * BLOCK_N
    else:
        hi = seq_k
        full = (seq_k // BLOCK_N) * BLOCK_N
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m, offs_d,
        0, full, seq_k, causal_shift, qk_scale,
        BLOCK_N, False, CAUSAL, INPUT_PRECISION, UPCAST_DOT,
    )
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m, offs_d,
        full, hi, seq_k, causal_shift, qk_scale,
        BLOCK_N, True, CAUSAL, INPUT_PRECISION, UPCAST_DOT,
    )
    out = acc / l_i[:, None]
    tl.store(o_base + offs_m[:, None] * stride_om + offs_d[None, :], out.to(o_ptr.dtype.element_ty), mask=q_mask)


def _check_gqa(n_heads: int, n_kv_heads: int) -> int:
    require(n_kv_heads >= 1, "k/v have no heads")
    require(
        n_heads % n_kv_heads == 0,
        f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads}) for grouped-query attention",
    )
    return n_heads // n_kv_heads


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    causal: bool = True,
    sm_scale: float | None = None,
    config: AttentionConfig | dict | str | None = None,
) -> torch.Tensor:
    """Fused attention forward, ``softmax(q kᵀ · sm_scale + mask) v``, one pass over K/V per Q tile.

    ``q (B, H, Sq, D)``, ``k, v (B, Hkv, Sk, D)``. With ``causal`` and ``Sk > Sq`` (a prefill chunk
    after ``Sk - Sq`` cached tokens) the mask is aligned to the bottom right: query ``i`` sees keys
    ``j <= i + Sk - Sq``. ``sm_scale`` defaults to ``1/sqrt(D)``. ``config`` sets BLOCK_M/BLOCK_N and
    the launch (:class:`AttentionConfig`, a mapping, or ``"BLOCK_M=128,BLOCK_N=64,..."``).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(t, name, ndim=4, dtypes=_FLOAT_DTYPES)
        check_last_dim_contiguous(t, name)
    dev = check_device(("q", q), ("k", k), ("v", v))
    require(q.dtype == k.dtype == v.dtype, f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    B, H, Sq, D = q.shape
    require(k.shape == v.shape, f"k has shape {tuple(k.shape)} but v has shape {tuple(v.shape)}")
    Bk, Hkv, Sk, Dk = k.shape
    require(Bk == B, f"batch differs: q has {B}, k/v have {Bk}")
    require(Dk == D, f"head_dim differs: q has {D}, k/v have {Dk}")
    _check_head_dim(D)
    group = _check_gqa(H, Hkv)
    if causal:
        require(Sk >= Sq, f"causal attention needs at least as many keys as queries (Sq={Sq}, Sk={Sk})")
    require(Sk >= 1 or Sq == 0, "k/v have no positions")
    check_out(out, "out", q.shape, q.dtype, dev)
    if out is None:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
    check_last_dim_contiguous(out, "out")
    if B == 0 or H == 0 or Sq == 0:
        return out
    cfg = parse_config(AttentionConfig, config) if config is not None else default_attention_config(D)
    sm_scale = 1.0 / math.sqrt(D) if sm_scale is None else float(sm_scale)

    grid = (triton.cdiv(Sq, cfg.BLOCK_M), B * H)
    _attn_fwd_kernel[grid](
        q, k, v, out,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        H, Sq, Sk, group, Sk - Sq, sm_scale * _LOG2E,
        HEAD_DIM=D, BLOCK_M=cfg.BLOCK_M, BLOCK_N=cfg.BLOCK_N, CAUSAL=bool(causal),
        INPUT_PRECISION=dot_precision(q.dtype, False), UPCAST_DOT=interpreter_upcast_dot(q.dtype),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out


def attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    sm_scale: float | None = None,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` with K/V heads repeated for GQA."""
    H, Sq, D = q.shape[1], q.shape[2], q.shape[3]
    Hkv, Sk = k.shape[1], k.shape[2]
    group = H // Hkv
    qc, kc, vc = (t.to(compute_dtype) for t in (q, k, v))
    if group > 1:
        kc = kc.repeat_interleave(group, dim=1)
        vc = vc.repeat_interleave(group, dim=1)
    scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if not causal:
        return sdpa(qc, kc, vc, scale=scale)
    if Sq == Sk:
        return sdpa(qc, kc, vc, is_causal=True, scale=scale)
    i = torch.arange(Sq, device=q.device)[:, None]
    j = torch.arange(Sk, device=q.device)[None, :]
    return sdpa(qc, kc, vc, attn_mask=j <= i + (Sk - Sq), scale=scale)


def attention_cost(
    batch: int, n_heads: int, n_kv_heads: int, seq_q: int, seq_k: int, head_dim: int, dtype: torch.dtype,
    causal: bool = True,
) -> dict:
    """FLOPs of QKᵀ and PV over the visible (query, key) pairs; bytes = Q, K, V read once + O written."""
    if causal:
        shift = seq_k - seq_q
        pairs = seq_q * shift + seq_q * (seq_q + 1) // 2
    else:
        pairs = seq_q * seq_k
    e = element_size(dtype)
    flops = 4 * batch * n_heads * pairs * head_dim
    nbytes = e * batch * head_dim * (2 * n_heads * seq_q + 2 * n_kv_heads * seq_k)
    return {"flops": flops, "bytes": nbytes}


# ==================================================================================================
# Decode: flash-decoding over a KV cache (split-K over the context, then a combine kernel)
# ==================================================================================================
