"""Memory-bound kernels: streaming read, copy, fused RMSNorm and fused SwiGLU.

Each launcher takes torch tensors (CUDA, or CPU under ``TRITON_INTERPRET=1``), accepts an optional
preallocated ``out`` so a timing loop allocates nothing, and returns the output. ``*_ref`` functions
compute the same result with plain torch ops (float64 by default); ``*_cost`` give the FLOPs and the
compulsory DRAM bytes the kernel is meant to exercise.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    _FLOAT_DTYPES,
    check_device,
    check_last_dim_contiguous,
    check_out,
    check_tensor,
    element_size,
    interpreter_active,
    num_sms,
    require,
)

# --------------------------------------------------------------------------------------------------
# Streaming read: every program sums a strided set of blocks into one fp32 partial.
# --------------------------------------------------------------------------------------------------


@triton.jit
def _stream_read_kernel(x_ptr, out_ptr, n_elements, step, BLOCK: tl.constexpr):
    # step = number of programs * BLOCK; int64 start so buffers over 2**31 elements index correctly.
    pid = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(pid.to(tl.int64) * BLOCK, n_elements, step):
        idx = start + offs
        x = tl.load(x_ptr + idx, mask=idx < n_elements, other=0.0)
        acc += x.to(tl.float32)
    tl.store(out_ptr + pid, tl.sum(acc, axis=0))


def stream_read(
    x: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    num_programs: int | None = None,
    block_size: int = 4096,
    num_warps: int = 8,
) -> torch.Tensor:
    """Read all of ``x`` once and return ``num_programs`` fp32 partial sums.

    Program ``p`` sums blocks ``p, p + P, p + 2P, ...`` of ``block_size`` elements (P = number of
    programs), so DRAM traffic is the whole input and the output is tiny. ``x`` must be contiguous.
    """
    check_tensor(x, "x", dtypes=_FLOAT_DTYPES)
    dev = check_device(("x", x))
    require(x.is_contiguous(), "x must be contiguous")
    require(triton.next_power_of_2(block_size) == block_size, f"block_size must be a power of two, got {block_size}")
    n = x.numel()
    require(n > 0, "x is empty")
    n_blocks = triton.cdiv(n, block_size)
    if num_programs is None:
        num_programs = min(n_blocks, num_sms(dev) * (1 if interpreter_active() else 8))
    require(num_programs >= 1, f"num_programs must be >= 1, got {num_programs}")
    check_out(out, "out", (num_programs,), torch.float32, dev)
    if out is None:
        out = torch.empty(num_programs, dtype=torch.float32, device=dev)
    _stream_read_kernel[(num_programs,)](x, out, n, num_programs * block_size, BLOCK=block_size, num_warps=num_warps)
    return out


def stream_read_ref(
    x: torch.Tensor, num_programs: int, block_size: int = 4096, compute_dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The partial sums :func:`stream_read` returns for the same ``num_programs`` and ``block_size``."""
    flat = x.reshape(-1).to(compute_dtype)
    n_blocks = -(-flat.numel() // block_size)
    flat = torch.nn.functional.pad(flat, (0, n_blocks * block_size - flat.numel()))
    block_sums = flat.view(n_blocks, block_size).sum(dim=1)
    rounds = -(-n_blocks // num_programs)
    block_sums = torch.nn.functional.pad(block_sums, (0, rounds * num_programs - n_blocks))
    return block_sums.view(rounds, num_programs).sum(dim=0)


def stream_read_cost(n_elements: int, dtype: torch.dtype) -> dict:
    return {"flops": n_elements, "bytes": n_elements * element_size(dtype)}


# --------------------------------------------------------------------------------------------------
# Copy
# --------------------------------------------------------------------------------------------------


@triton.jit
def _copy_kernel(x_ptr, y_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n_elements
    tl.store(y_ptr + idx, tl.load(x_ptr + idx, mask=mask), mask=mask)


def copy(x: torch.Tensor, out: torch.Tensor | None = None, *, block_size: int = 4096, num_warps: int = 8) -> torch.Tensor:
    """Copy a contiguous tensor into ``out`` (same shape and dtype): reads and writes every byte once."""
    check_tensor(x, "x")
    dev = check_device(("x", x))
    require(x.is_contiguous(), "x must be contiguous")
    require(triton.next_power_of_2(block_size) == block_size, f"block_size must be a power of two, got {block_size}")
    check_out(out, "out", x.shape, x.dtype, dev)
    if out is None:
        out = torch.empty_like(x)
    require(out.is_contiguous(), "out must be contiguous")
    n = x.numel()
    if n:
        _copy_kernel[(triton.cdiv(n, block_size),)](x, out, n, BLOCK=block_size, num_warps=num_warps)
    return out


def copy_ref(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def copy_cost(n_elements: int, dtype: torch.dtype) -> dict:
    return {"flops": 0, "bytes": 2 * n_elements * element_size(dtype)}


# --------------------------------------------------------------------------------------------------
# RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, one program per row.
# --------------------------------------------------------------------------------------------------


@triton.jit
def _rmsnorm_kernel(
    x_ptr, w_ptr, y_ptr, stride_x, stride_y, n_cols, eps,
    BLOCK: tl.constexpr, SINGLE_PASS: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    y_row = y_ptr + row * stride_y
    cols = tl.arange(0, BLOCK)
    if SINGLE_PASS:
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_row + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)
    else:
        sq = tl.zeros((BLOCK,), dtype=tl.float32)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            x = tl.load(x_row + c, mask=c < n_cols, other=0.0).to(tl.float32)
            sq += x * x
        rstd = 1.0 / tl.sqrt(tl.sum(sq, axis=0) / n_cols + eps)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            mask = c < n_cols
            x = tl.load(x_row + c, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + c, mask=mask, other=0.0).to(tl.float32)
            tl.store(y_row + c, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)


_RMSNORM_MAX_BLOCK = 8192


def rmsnorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    out: torch.Tensor | None = None,
    *,
    block_size: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """Fused RMSNorm over the last dimension of ``x`` (any leading shape), times ``weight`` (hidden,).

    Statistics in fp32; output in ``x.dtype``. Rows up to ``block_size`` elements (default: the
    hidden size rounded up to a power of two, at most 8192) are held in registers and read once;
    longer rows take a second pass over ``x``.
    """
    check_tensor(x, "x", dtypes=_FLOAT_DTYPES)
    check_tensor(weight, "weight", ndim=1, dtypes=_FLOAT_DTYPES)
    dev = check_device(("x", x), ("weight", weight))
    require(x.dim() >= 1, "x must have at least one dimension")
    hidden = x.shape[-1]
    require(hidden > 0, "x has an empty last dimension")
    require(weight.shape[0] == hidden, f"weight has shape {tuple(weight.shape)} but x's hidden size is {hidden}")
    check_last_dim_contiguous(x, "x")
    require(weight.is_contiguous(), "weight must be contiguous")
    check_out(out, "out", x.shape, x.dtype, dev)
    x2 = x.reshape(-1, hidden)
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=dev)
    require(out.is_contiguous(), "out must be contiguous")
    y2 = out.view(-1, hidden)
    if block_size is None:
        block_size = min(triton.next_power_of_2(hidden), _RMSNORM_MAX_BLOCK)
    require(triton.next_power_of_2(block_size) == block_size, f"block_size must be a power of two, got {block_size}")
    if num_warps is None:
        num_warps = 4 if block_size <= 2048 else 8 if block_size <= 8192 else 16
    rows = x2.shape[0]
    if rows:
        _rmsnorm_kernel[(rows,)](
            x2, weight, y2, x2.stride(0), y2.stride(0), hidden, eps,
            BLOCK=block_size, SINGLE_PASS=block_size >= hidden, num_warps=num_warps,
        )
    return out


def rmsnorm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, compute_dtype=torch.float64) -> torch.Tensor:
    xc = x.to(compute_dtype)
    rstd = torch.rsqrt(xc.pow(2).mean(dim=-1, keepdim=True) + eps)
    return xc * rstd * weight.to(compute_dtype)


def rmsnorm_cost(tokens: int, hidden: int, dtype: torch.dtype) -> dict:
    e = element_size(dtype)
    return {"flops": 4 * tokens * hidden, "bytes": 2 * tokens * hidden * e + hidden * e}


# --------------------------------------------------------------------------------------------------
# SwiGLU: y = silu(gate) * up, elementwise over (rows, cols) with per-row strides.
# --------------------------------------------------------------------------------------------------


@triton.jit
def _swiglu_kernel(g_ptr, u_ptr, y_ptr, stride_g, stride_u, stride_y, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(g_ptr + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(y_ptr + row * stride_y + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


def swiglu(
    gate: torch.Tensor,
    up: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    block_size: int = 1024,
    num_warps: int = 4,
) -> torch.Tensor:
    """``silu(gate) * up`` in one pass (fp32 math, output in the input dtype).

    ``gate`` and ``up`` have the same shape and dtype and must be contiguous in the last dimension;
    rows may be strided, so the two halves of a fused ``gate_up`` projection output
    (``gu[..., :I]``, ``gu[..., I:]``) can be passed without copies.
    """
    check_tensor(gate, "gate", dtypes=_FLOAT_DTYPES)
    check_tensor(up, "up", dtypes=_FLOAT_DTYPES)
    dev = check_device(("gate", gate), ("up", up))
    require(gate.shape == up.shape, f"gate has shape {tuple(gate.shape)} but up has shape {tuple(up.shape)}")
    require(gate.dtype == up.dtype, f"gate is {gate.dtype} but up is {up.dtype}")
    require(gate.dim() >= 1, "gate must have at least one dimension")
    require(triton.next_power_of_2(block_size) == block_size, f"block_size must be a power of two, got {block_size}")
    check_last_dim_contiguous(gate, "gate")
    check_last_dim_contiguous(up, "up")
    check_out(out, "out", gate.shape, gate.dtype, dev)
    if out is None:
        out = torch.empty(gate.shape, dtype=gate.dtype, device=dev)
    require(out.is_contiguous(), "out must be contiguous")
    cols = gate.shape[-1]
    g2, u2 = gate.reshape(-1, cols), up.reshape(-1, cols)
    y2 = out.view(-1, cols)
    rows = g2.shape[0]
    if rows and cols:
        grid = (rows, triton.cdiv(cols, block_size))
        _swiglu_kernel[grid](
            g2, u2, y2, g2.stride(0), u2.stride(0), y2.stride(0), cols, BLOCK=block_size, num_warps=num_warps
        )
    return out


def swiglu_ref(gate: torch.Tensor, up: torch.Tensor, compute_dtype=torch.float64) -> torch.Tensor:
    return torch.nn.functional.silu(gate.to(compute_dtype)) * up.to(compute_dtype)


def swiglu_cost(tokens: int, intermediate: int, dtype: torch.dtype) -> dict:
    n = tokens * intermediate
    return {"flops": 5 * n, "bytes": 3 * n * element_size(dtype)}
