"""Tiled GEMM ``C = A @ B``: bf16/fp16/fp32 (or fp8 e4m3 on sm_89+) inputs, fp32 accumulation.

Launch config resolution in :func:`gemm`, first match wins:

1. the ``config=`` argument (a :class:`GemmConfig`, a mapping, or ``"BLOCK_M=64,BLOCK_N=64,..."``);
2. the ``ROOFSIM_GEMM_CONFIG`` environment variable, same string format;
3. under the Triton interpreter, :func:`default_config` (autotuning there would time numpy);
4. otherwise ``triton.autotune`` over :data:`GEMM_CONFIGS`, keyed on (M, N, K) and the dtypes,
   with skinny-M configs considered only for M <= 64 (decode) and wide ones only above.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import triton
import triton.language as tl

from ._common import (
    check_device,
    check_out,
    check_tensor,
    dot_precision,
    element_size,
    fp8_supported,
    interpreter_active,
    interpreter_upcast_dot,
    is_pow2,
    parse_config,
    require,
)

GEMM_CONFIG_ENV = "ROOFSIM_GEMM_CONFIG"


@dataclasses.dataclass(frozen=True)
class GemmConfig:
    BLOCK_M: int
    BLOCK_N: int
    BLOCK_K: int
    GROUP_M: int = 8
    num_warps: int = 4
    num_stages: int = 3

    def validate(self) -> None:
        for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
            v = getattr(self, name)
            require(is_pow2(v) and v >= 16, f"GemmConfig.{name} must be a power of two >= 16, got {v}")
        require(self.GROUP_M >= 1, f"GemmConfig.GROUP_M must be >= 1, got {self.GROUP_M}")
        require(is_pow2(self.num_warps), f"GemmConfig.num_warps must be a power of two, got {self.num_warps}")
        require(self.num_stages >= 1, f"GemmConfig.num_stages must be >= 1, got {self.num_stages}")

    def meta(self) -> dict:
        return {"BLOCK_M": self.BLOCK_M, "BLOCK_N": self.BLOCK_N, "BLOCK_K": self.BLOCK_K, "GROUP_M": self.GROUP_M}

    def to_triton(self) -> triton.Config:
        return triton.Config(self.meta(), num_warps=self.num_warps, num_stages=self.num_stages)

    @classmethod
    def parse(cls, spec: Any) -> "GemmConfig":
        return parse_config(cls, spec)


# Prefill / large-M tiles (Hopper-sized; shared memory per stage = (BM + BN) * BK * elem bytes).
# On an H200 these reach about 550-570 bf16 TFLOP/s at 8192^3 (cuBLAS: about 720).
_LARGE_CONFIGS = (
    GemmConfig(128, 256, 64, num_warps=8, num_stages=3),
    GemmConfig(256, 128, 64, num_warps=8, num_stages=4),
    GemmConfig(128, 128, 64, num_warps=8, num_stages=4),
    GemmConfig(128, 128, 64, num_warps=4, num_stages=4),
    GemmConfig(128, 128, 64, num_warps=4, num_stages=5),
    GemmConfig(128, 64, 64, num_warps=4, num_stages=4),
    GemmConfig(64, 128, 64, num_warps=4, num_stages=4),
    GemmConfig(128, 128, 128, num_warps=8, num_stages=3),
)
# Decode / small-M tiles: few rows, long K chunks so each program streams a wide strip of B.
_SKINNY_CONFIGS = (
    GemmConfig(16, 64, 128, num_warps=4, num_stages=4),
    GemmConfig(16, 128, 128, num_warps=4, num_stages=4),
    GemmConfig(16, 256, 64, num_warps=4, num_stages=4),
    GemmConfig(32, 64, 128, num_warps=4, num_stages=4),
    GemmConfig(32, 128, 64, num_warps=4, num_stages=4),
    GemmConfig(64, 64, 128, num_warps=4, num_stages=3),
    GemmConfig(64, 128, 64, num_warps=4, num_stages=3),
)
GEMM_CONFIGS: tuple[GemmConfig, ...] = _LARGE_CONFIGS + _SKINNY_CONFIGS


def default_config(M: int, N: int, K: int) -> GemmConfig:
    """A reasonable single config (no tuning): small tiles for small problems."""
    bm = min(128, max(16, triton.next_power_of_2(M)))
    bn = min(128, max(16, triton.next_power_of_2(N)))
    bk = min(64, max(16, triton.next_power_of_2(K)))
    return GemmConfig(bm, bn, bk, num_warps=8 if bm * bn >= 128 * 128 else 4, num_stages=3)


def _prune_configs(configs, named_args, **kwargs):
    M = named_args["M"]
    if M <= 64:
        cap = max(16, triton.next_power_of_2(M))
        keep = [c for c in configs if c.kwargs["BLOCK_M"] <= cap]
    else:
        keep = [c for c in configs if c.kwargs["BLOCK_M"] >= 64]
    return keep or list(configs)


@triton.jit
def _gemm_kernel(
    a_ptr, b_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    # Grouped tile order: GROUP_M row-tiles share each column strip of B while it is in L2.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # Rows/cols past the edge wrap around (loads stay in bounds, results are not stored).
    offs_am = (offs_m % M).to(tl.int64)
    offs_bn = (offs_n % N).to(tl.int64)
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kk * BLOCK_K
        a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        if UPCAST_DOT:  # interpreter only: its tl.dot cannot multiply bf16 (see interpreter_upcast_dot)
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c = acc.to(c_ptr.dtype.element_ty)
    c_ptrs = c_ptr + offs_m.to(tl.int64)[:, None] * stride_cm + offs_n.to(tl.int64)[None, :] * stride_cn
    tl.store(c_ptrs, c, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


_gemm_kernel_autotuned = triton.autotune(
    configs=[c.to_triton() for c in GEMM_CONFIGS],
    key=["M", "N", "K"],
    prune_configs_by={"early_config_prune": _prune_configs},
)(_gemm_kernel)


def _input_dtypes() -> tuple:
    dts = [torch.float32, torch.float16, torch.bfloat16]
    if hasattr(torch, "float8_e4m3fn"):
        dts.append(torch.float8_e4m3fn)
    return tuple(dts)


def _resolve_config(config: Any, M: int, N: int, K: int) -> GemmConfig | None:
    if config is not None:
        return GemmConfig.parse(config)
    env = os.environ.get(GEMM_CONFIG_ENV, "").strip()
    if env:
        return GemmConfig.parse(env)
    if interpreter_active():
        return default_config(M, N, K)
    return None


def gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    out_dtype: torch.dtype | None = None,
    config: GemmConfig | dict | str | None = None,
    allow_tf32: bool = False,
) -> torch.Tensor:
    """``a (M, K) @ b (K, N) -> (M, N)``, fp32 accumulation.

    Any strides are accepted (pass ``weight.t()`` for an ``nn.Linear`` weight). ``out_dtype``
    defaults to the input dtype, or bf16 for fp8 inputs. fp32 inputs use exact fp32 products unless
    ``allow_tf32``. ``config`` pins one launch config instead of autotuning (see module docstring).
    For fp8, pass ``b`` K-major (``weight.t()`` of an (N, K) weight): an N-major fp8 ``b`` is
    transposed inside the kernel and runs several times slower on Hopper.
    """
    check_tensor(a, "a", ndim=2, dtypes=_input_dtypes())
    check_tensor(b, "b", ndim=2, dtypes=_input_dtypes())
    dev = check_device(("a", a), ("b", b))
    require(a.dtype == b.dtype, f"a is {a.dtype} but b is {b.dtype}; both inputs must have one dtype")
    M, K = a.shape
    K2, N = b.shape
    require(K == K2, f"inner dimensions differ: a is {tuple(a.shape)} (M, K) but b is {tuple(b.shape)} (K, N)")
    is_fp8 = hasattr(torch, "float8_e4m3fn") and a.dtype == torch.float8_e4m3fn
    if is_fp8:
        require(fp8_supported(dev), f"float8_e4m3fn GEMM needs a CUDA device of compute capability >= 8.9 (device {dev})")
    if out_dtype is None:
        out_dtype = out.dtype if out is not None else (torch.bfloat16 if is_fp8 else a.dtype)
    require(out_dtype in (torch.float32, torch.float16, torch.bfloat16), f"unsupported out_dtype {out_dtype}")
    check_out(out, "out", (M, N), out_dtype, dev)
    if out is None:
        out = torch.empty((M, N), dtype=out_dtype, device=dev)
    if M == 0 or N == 0:
        return out
    if K == 0:
        return out.zero_()

    args = (a, b, out, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1))
    precision = dot_precision(a.dtype, allow_tf32)
    upcast = interpreter_upcast_dot(a.dtype)
    cfg = _resolve_config(config, M, N, K)
    if cfg is not None:
        grid = (triton.cdiv(M, cfg.BLOCK_M) * triton.cdiv(N, cfg.BLOCK_N),)
        _gemm_kernel[grid](
            *args, **cfg.meta(), INPUT_PRECISION=precision, UPCAST_DOT=upcast,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
    else:
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
        _gemm_kernel_autotuned[grid](*args, INPUT_PRECISION=precision, UPCAST_DOT=upcast)
    return out


def last_autotuned_config() -> GemmConfig | None:
    """The config the autotuner picked on its most recent call (None before any autotuned call)."""
    best = getattr(_gemm_kernel_autotuned, "best_config", None)
    if best is None:
        return None
    kw = best.kwargs
    return GemmConfig(kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], kw.get("GROUP_M", 8), best.num_warps, best.num_stages)


def gemm_ref(a: torch.Tensor, b: torch.Tensor, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.matmul(a.to(compute_dtype), b.to(compute_dtype))


def gemm_cost(M: int, N: int, K: int, in_dtype: torch.dtype, out_dtype: torch.dtype | None = None) -> dict:
    """2·M·N·K FLOPs; compulsory bytes = each input read once + the output written once."""
    ei = element_size(in_dtype)
    eo = element_size(out_dtype or in_dtype)
    return {"flops": 2 * M * N * K, "bytes": (M * K + K * N) * ei + M * N * eo}
