"""Fused element-wise kernels of the validation decoder's training step, forward and backward.

What an efficient training engine runs between the GEMMs and the attention (Megatron-LM's fused
RMSNorm, rotary and SwiGLU kernels; Liger/Unsloth's Triton kernels), one Triton launch per operator
and direction, fp32 math on 16-bit tensors:

* **RMSNorm** ``y = x · rstd · w``, ``rstd = (mean(x²) + eps)^-½``: forward
  ``validation.kernels.memory.rmsnorm`` (saves only its input; rstd is recomputed from it in backward,
  which reads ``x`` anyway); backward ``dx = rstd · (w·dy − x̂ · mean(x̂ · w·dy))`` with ``x̂ = x · rstd``,
  and ``dw = Σ_rows dy · x̂`` as per-program partial sums added by one small reduction.
* **Rotary embedding** (Su et al. 2021, arXiv 2104.09864; Llama's rotate-half layout) on the packed QKV
  projection output: one launch reads each token's row once and writes Q and K rotated and V copied,
  each contiguous as (batch, seq, heads, head_dim), the layout FlashAttention reads; the backward
  rotates dQ and dK back (the inverse rotation) and writes them with dV into one packed dQKV, so the
  split of the projection output costs no gradient concatenation.
* **SwiGLU** ``silu(g) · u`` on the packed gate/up projection output: forward
  ``validation.kernels.memory.swiglu`` on its two halves (saves only the projection output); backward
  ``dg = dy · u · σ(g) · (1 + g · (1 − σ(g)))``, ``du = dy · silu(g)`` written into one packed dGU.
* **Embedding**: a row gather, cast to the autocast dtype under ``amp`` (so the residual stream is 16-bit,
  Megatron-LM's default without ``fp32_residual_connection``), whose backward scatter-adds each token's
  gradient row into the table gradient (``index_add_``: no sort and no host synchronisation, so the
  whole step can be captured in a CUDA graph).

The kernels take CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``; ``*_ref`` compute the same
functions with plain torch ops (autograd gives their gradients): the reference the tests compare the
kernels with, and what ``rms_norm``, ``rotary_qkv`` and ``swiglu`` run with ``fused=False`` or where
Triton cannot.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from validation.kernels._common import interpreter_active, num_sms
from validation.kernels.memory import rmsnorm as rmsnorm_forward
from validation.kernels.memory import swiglu as swiglu_forward


def triton_ok(t: torch.Tensor) -> bool:
    """Whether the Triton kernels can run on ``t``'s device in this process."""
    return t.is_cuda or (t.device.type == "cpu" and interpreter_active())


# --------------------------------------------------------------------------------------------------
# RMSNorm backward: each program walks a contiguous range of rows, keeping its dw partial in registers.
# --------------------------------------------------------------------------------------------------


@triton.jit
def _rmsnorm_bwd_kernel(dy_ptr, x_ptr, w_ptr, dx_ptr, dw_ptr, n_rows, n_cols, rows_per_prog, eps,
                        BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    cmask = cols < n_cols
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), dtype=tl.float32)
    first = pid.to(tl.int64) * rows_per_prog
    for i in range(0, rows_per_prog):
        row = first + i
        mask = cmask & (row < n_rows)
        x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
        xhat = x * rstd
        wdy = w * dy
        c = tl.sum(xhat * wdy, axis=0) / n_cols
        tl.store(dx_ptr + row * n_cols + cols, ((wdy - xhat * c) * rstd).to(dx_ptr.dtype.element_ty), mask=mask)
        dw += dy * xhat
    tl.store(dw_ptr + pid.to(tl.int64) * n_cols + cols, dw, mask=cmask)


def rmsnorm_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, eps: float):
    """(dx, dw) of ``rmsnorm(x, weight, eps)`` for the output gradient ``dy``."""
    hidden = x.shape[-1]
    x2 = x.reshape(-1, hidden).contiguous()
    dy2 = dy.reshape(-1, hidden).contiguous()
    rows = x2.shape[0]
    dx = torch.empty_like(x2)
    programs = max(1, min(rows, 8 * num_sms(x.device)))
    per = triton.cdiv(rows, programs)
    programs = triton.cdiv(rows, per)
    partial = torch.empty(programs, hidden, dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(hidden)
    _rmsnorm_bwd_kernel[(programs,)](dy2, x2, weight, dx, partial, rows, hidden, per, eps, BLOCK=block,
                                     num_warps=4 if block <= 2048 else 8)
    return dx.view(x.shape), partial.sum(0).to(weight.dtype)


def rmsnorm_ref(x, weight, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


class RMSNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        return rmsnorm_forward(x, weight, eps)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx, dw = rmsnorm_backward(dy, x, weight, ctx.eps)
        return dx, dw, None


def rms_norm(x, weight, eps, fused=True):
    return RMSNormFn.apply(x, weight, eps) if fused and triton_ok(x) else rmsnorm_ref(x, weight, eps)


# --------------------------------------------------------------------------------------------------
# Rotary embedding on packed QKV. Program (token, section): section 0 rotates Q, 1 rotates K, 2 copies V.
# ``cos`` and ``sin`` are fp32 tables [seq, head_dim / 2].
# --------------------------------------------------------------------------------------------------


@triton.jit
def _rotate_heads(src, s_sb, s_ss, s_sh, dst, d_sb, d_ss, d_sh, b, s, n_heads, c, sn,
                  HB: tl.constexpr, HALF: tl.constexpr, ROTATE: tl.constexpr):
    heads = tl.arange(0, HB)[:, None]
    d = tl.arange(0, HALF)[None, :]
    mask = (heads < n_heads) & (d < HALF)
    src_at = src + b * s_sb + s * s_ss + heads * s_sh + d
    dst_at = dst + b * d_sb + s * d_ss + heads * d_sh + d
    x1 = tl.load(src_at, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src_at + HALF, mask=mask, other=0.0).to(tl.float32)
    if ROTATE:
        y1 = x1 * c - x2 * sn
        y2 = x2 * c + x1 * sn
    else:
        y1 = x1
        y2 = x2
    tl.store(dst_at, y1.to(dst.dtype.element_ty), mask=mask)
    tl.store(dst_at + HALF, y2.to(dst.dtype.element_ty), mask=mask)


@triton.jit
def _rotary_kernel(sq, sq_b, sq_s, sq_h, sk, sk_b, sk_s, sk_h, sv, sv_b, sv_s, sv_h,
                   dq, dq_b, dq_s, dq_h, dk, dk_b, dk_s, dk_h, dv, dv_b, dv_s, dv_h,
                   cos_ptr, sin_ptr, seq_len, n_q, n_kv, sign,
                   HB: tl.constexpr, HALF: tl.constexpr):
    token = tl.program_id(0).to(tl.int64)
    section = tl.program_id(1)
    b = token // seq_len
    s = token % seq_len
    d = tl.arange(0, HALF)[None, :]
    c = tl.load(cos_ptr + s * HALF + d)
    sn = tl.load(sin_ptr + s * HALF + d) * sign  # sign -1: the inverse rotation (backward)
    if section == 0:
        _rotate_heads(sq, sq_b, sq_s, sq_h, dq, dq_b, dq_s, dq_h, b, s, n_q, c, sn, HB, HALF, True)
    elif section == 1:
        _rotate_heads(sk, sk_b, sk_s, sk_h, dk, dk_b, dk_s, dk_h, b, s, n_kv, c, sn, HB, HALF, True)
    else:
        _rotate_heads(sv, sv_b, sv_s, sv_h, dv, dv_b, dv_s, dv_h, b, s, n_kv, c, sn, HB, HALF, False)


def _launch_rotary(src, dst, cos, sin, sign):
    """Rotate (or copy) each of the three (batch, seq, heads, head_dim) tensors of ``src`` into ``dst``."""
    (sq, sk, sv), (dq, dk, dv) = src, dst
    b, s, n_q, dim = sq.shape
    n_kv = sk.shape[2]
    strides = [a for t in (sq, sk, sv, dq, dk, dv) for a in (t, *t.stride()[:3])]
    _rotary_kernel[(b * s, 3)](*strides, cos, sin, s, n_q, n_kv, sign, HB=triton.next_power_of_2(max(n_q, n_kv)),
                               HALF=dim // 2, num_warps=4)


def _split_heads(packed, n_q, n_kv, dim):
    """Q, K, V as (batch, seq, heads, head_dim) views of a packed (batch, seq, (n_q + 2 n_kv) head_dim)."""
    b, s, _ = packed.shape
    return packed.view(b, s, n_q + 2 * n_kv, dim).split([n_q, n_kv, n_kv], dim=2)


class RotaryQKVFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, cos, sin, n_q, n_kv, dim):
        b, s, _ = qkv.shape
        out = tuple(torch.empty(b, s, n, dim, dtype=qkv.dtype, device=qkv.device) for n in (n_q, n_kv, n_kv))
        _launch_rotary(_split_heads(qkv, n_q, n_kv, dim), out, cos, sin, 1.0)
        ctx.save_for_backward(cos, sin)
        ctx.heads = (n_q, n_kv, dim)
        return out

    @staticmethod
    def backward(ctx, gq, gk, gv):
        cos, sin = ctx.saved_tensors
        n_q, n_kv, dim = ctx.heads
        grads = tuple(g if g.stride(-1) == 1 else g.contiguous() for g in (gq, gk, gv))
        b, s = gq.shape[:2]
        packed = torch.empty(b, s, (n_q + 2 * n_kv) * dim, dtype=gq.dtype, device=gq.device)
        _launch_rotary(grads, _split_heads(packed, n_q, n_kv, dim), cos, sin, -1.0)
        return packed, None, None, None, None, None


def rotary_ref(qkv, cos, sin, n_q, n_kv, dim):
    q, k, v = _split_heads(qkv, n_q, n_kv, dim)
    c = torch.cat((cos, cos), dim=-1)[:, None, :]
    sn = torch.cat((sin, sin), dim=-1)[:, None, :]

    def rot(x):
        x1, x2 = x.float().chunk(2, dim=-1)
        return (x.float() * c + torch.cat((-x2, x1), dim=-1) * sn).to(x.dtype)

    return rot(q), rot(k), v


def rotary_qkv(qkv, cos, sin, n_q, n_kv, dim, fused=True):
    """Q and K rotated, and V, each (batch, heads, seq, head_dim) over a (batch, seq, heads, head_dim)
    layout, from the packed QKV projection output."""
    fn = RotaryQKVFn.apply if fused and triton_ok(qkv) else rotary_ref
    return tuple(t.transpose(1, 2) for t in fn(qkv, cos, sin, n_q, n_kv, dim))


# --------------------------------------------------------------------------------------------------
# SwiGLU backward on the packed gate/up tensor [rows, 2I].
# --------------------------------------------------------------------------------------------------


@triton.jit
def _swiglu_bwd_kernel(dy_ptr, gu_ptr, dgu_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(gu_ptr + row * 2 * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(gu_ptr + row * 2 * n_cols + n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    dg = dy * u * sig * (1.0 + g * (1.0 - sig))
    du = dy * g * sig
    tl.store(dgu_ptr + row * 2 * n_cols + cols, dg.to(dgu_ptr.dtype.element_ty), mask=mask)
    tl.store(dgu_ptr + row * 2 * n_cols + n_cols + cols, du.to(dgu_ptr.dtype.element_ty), mask=mask)


def swiglu_backward(dy, gate_up):
    """The gradient of the packed gate/up tensor of ``swiglu(gate_up)``."""
    inter = gate_up.shape[-1] // 2
    gu = gate_up.reshape(-1, 2 * inter).contiguous()
    dy2 = dy.reshape(-1, inter).contiguous()
    dgu = torch.empty_like(gu)
    block = 1024
    _swiglu_bwd_kernel[(gu.shape[0], triton.cdiv(inter, block))](dy2, gu, dgu, inter, BLOCK=block, num_warps=4)
    return dgu.view(gate_up.shape)


class SwiGLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate_up):
        ctx.save_for_backward(gate_up)
        inter = gate_up.shape[-1] // 2
        return swiglu_forward(gate_up[..., :inter], gate_up[..., inter:])

    @staticmethod
    def backward(ctx, dy):
        (gate_up,) = ctx.saved_tensors
        return swiglu_backward(dy, gate_up)


def swiglu_ref(gate_up):
    g, u = gate_up.chunk(2, dim=-1)
    return (torch.nn.functional.silu(g.float()) * u.float()).to(gate_up.dtype)


def swiglu(gate_up, fused=True):
    """``silu(gate) · up`` of a packed (…, 2I) gate/up projection output."""
    return SwiGLUFn.apply(gate_up) if fused and triton_ok(gate_up) else swiglu_ref(gate_up)


# --------------------------------------------------------------------------------------------------
# Embedding: gather (cast to the compute dtype), scatter-add backward.
# --------------------------------------------------------------------------------------------------


class EmbeddingFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids, weight, dtype):
        ctx.save_for_backward(ids)
        ctx.table = (weight.shape, weight.dtype)
        return torch.nn.functional.embedding(ids, weight).to(dtype)

    @staticmethod
    def backward(ctx, dy):
        (ids,) = ctx.saved_tensors
        shape, dtype = ctx.table
        grad = torch.zeros(shape, dtype=dtype, device=dy.device)
        grad.index_add_(0, ids.reshape(-1), dy.reshape(-1, shape[1]).to(dtype))
        return None, grad, None


def embedding(ids, weight, dtype):
    """Rows of ``weight`` for ``ids``, in ``dtype``."""
    return EmbeddingFn.apply(ids, weight, dtype)
