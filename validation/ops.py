"""The two small kernels an inference engine runs around attention, as the cost model prices them.

* :func:`rotary_` — rotary position embedding (rotate-half convention, as Llama) applied in place to
  the query and key heads of a fused ``qkv`` projection output: one read and one write of
  ``(H + Hkv) x D`` elements per token (the step's ``rotary`` operator);
* :func:`kv_write` — copy the new tokens' keys and values into a static KV cache
  ``(B, Hkv, S_max, D)`` at positions ``past, past + 1, ...``: ``2 x Hkv x D`` elements read and
  written per token (the step's ``kv_cache_write`` operator).

Both run as Triton kernels on a GPU (or under ``TRITON_INTERPRET=1`` on the CPU); ``*_ref`` are the
plain torch equivalents used by the tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def rope_tables(max_positions: int, head_dim: int, theta: float = 500000.0, device="cpu"):
    """fp32 ``cos, sin`` of shape (max_positions, head_dim // 2)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    ang = torch.arange(max_positions, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().to(torch.float32).to(device), ang.sin().to(torch.float32).to(device)


@triton.jit
def _rotary_kernel(x_ptr, pos_ptr, cos_ptr, sin_ptr, stride_t, n_heads,
                   HALF: tl.constexpr, BLOCK: tl.constexpr, HEADS: tl.constexpr):
    # One program = one token x HEADS heads, as a [HEADS, HALF] tile.
    t = tl.program_id(0).to(tl.int64)
    hs = tl.program_id(1) * HEADS + tl.arange(0, HEADS)
    offs = tl.arange(0, BLOCK)
    mask = (hs[:, None] < n_heads) & (offs[None, :] < HALF)
    pos = tl.load(pos_ptr + t).to(tl.int64)
    base = x_ptr + t * stride_t + hs[:, None].to(tl.int64) * (2 * HALF) + offs[None, :]
    x1 = tl.load(base, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(base + HALF, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(cos_ptr + pos * HALF + offs, mask=offs < HALF, other=0.0)[None, :]
    s = tl.load(sin_ptr + pos * HALF + offs, mask=offs < HALF, other=0.0)[None, :]
    tl.store(base, (x1 * c - x2 * s).to(x_ptr.dtype.element_ty), mask=mask)
    tl.store(base + HALF, (x2 * c + x1 * s).to(x_ptr.dtype.element_ty), mask=mask)


_HEADS_PER_PROGRAM = 8


def rotary_(qkv: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_rot_heads: int,
            head_dim: int) -> torch.Tensor:
    """Rotate the first ``n_rot_heads`` heads (queries then keys) of each row of ``qkv`` in place.

    ``qkv`` is (tokens, width) with the heads laid out contiguously at the start of each row;
    ``positions`` (tokens,) integer positions into the ``cos``/``sin`` tables.
    """
    assert qkv.dim() == 2 and qkv.stride(1) == 1 and head_dim % 2 == 0
    tokens = qkv.shape[0]
    half = head_dim // 2
    if tokens and n_rot_heads:
        grid = (tokens, triton.cdiv(n_rot_heads, _HEADS_PER_PROGRAM))
        _rotary_kernel[grid](qkv, positions, cos, sin, qkv.stride(0), n_rot_heads, HALF=half,
                             BLOCK=triton.next_power_of_2(half), HEADS=_HEADS_PER_PROGRAM, num_warps=4)
    return qkv


def rotary_ref(qkv: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_rot_heads: int,
               head_dim: int) -> torch.Tensor:
    out = qkv.clone()
    half = head_dim // 2
    x = qkv[:, : n_rot_heads * head_dim].to(torch.float32).view(qkv.shape[0], n_rot_heads, head_dim)
    c = cos[positions.long()][:, None, :]
    s = sin[positions.long()][:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    rot = torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
    out[:, : n_rot_heads * head_dim] = rot.reshape(qkv.shape[0], -1).to(qkv.dtype)
    return out


@triton.jit
def _kv_write_kernel(k_ptr, v_ptr, kc_ptr, vc_ptr, stride_t, seq_new, past, n_heads,
                     stride_cb, stride_ch, stride_cs, BLOCK: tl.constexpr, D: tl.constexpr, HEADS: tl.constexpr):
    # One program = one token x HEADS KV heads.
    t = tl.program_id(0).to(tl.int64)
    hs = tl.program_id(1) * HEADS + tl.arange(0, HEADS)
    b = t // seq_new
    s = t % seq_new + past
    offs = tl.arange(0, BLOCK)
    mask = (hs[:, None] < n_heads) & (offs[None, :] < D)
    src = t * stride_t + hs[:, None].to(tl.int64) * D + offs[None, :]
    k = tl.load(k_ptr + src, mask=mask)
    v = tl.load(v_ptr + src, mask=mask)
    dst = b * stride_cb + hs[:, None].to(tl.int64) * stride_ch + s * stride_cs + offs[None, :]
    tl.store(kc_ptr + dst, k, mask=mask)
    tl.store(vc_ptr + dst, v, mask=mask)


def kv_write(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_new: int,
             past: int) -> None:
    """Write ``k, v`` (tokens = B * seq_new rows, each ``Hkv * D`` wide, batch-major) into the caches
    ``(B, Hkv, S_max, D)`` at positions ``past .. past + seq_new - 1``. Rows may be strided."""
    tokens = k.shape[0]
    B, Hkv, S_max, D = k_cache.shape
    assert tokens == B * seq_new and past + seq_new <= S_max
    assert k.stride(0) == v.stride(0) and k.stride(1) == 1 and v.stride(1) == 1
    assert k_cache.stride() == v_cache.stride() and k_cache.stride(3) == 1
    if tokens:
        grid = (tokens, triton.cdiv(Hkv, _HEADS_PER_PROGRAM))
        _kv_write_kernel[grid](k, v, k_cache, v_cache, k.stride(0), seq_new, past, Hkv,
                               k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
                               BLOCK=triton.next_power_of_2(D), D=D, HEADS=_HEADS_PER_PROGRAM, num_warps=4)


def kv_write_ref(k, v, k_cache, v_cache, seq_new: int, past: int):
    B, Hkv, _, D = k_cache.shape
    kc, vc = k_cache.clone(), v_cache.clone()
    kc[:, :, past:past + seq_new] = k.reshape(B, seq_new, Hkv, D).transpose(1, 2)
    vc[:, :, past:past + seq_new] = v.reshape(B, seq_new, Hkv, D).transpose(1, 2)
    return kc, vc
