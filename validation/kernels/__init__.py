"""Triton kernels whose timings calibrate the cost models (see docs/kernels.md).

Submodules, one per kernel family, import torch and triton; this package itself imports neither,
so ``import validation.kernels`` works on a machine without them.

* ``memory``    — ``stream_read``, ``copy``, ``rmsnorm``, ``swiglu``
* ``gemm``      — ``gemm`` (autotuned, or one pinned config)
* ``attention`` — ``flash_attention`` (causal prefill, FlashAttention-2 style)
* ``decode_attention`` — ``decode_attention`` (split-K over a KV cache)
* ``moe``       — ``topk_softmax`` (fused routing), ``unpermute`` (weighted sum back to token order)

Each kernel ``name`` has ``name_ref`` (pure torch, float64 by default) and ``name_cost`` (FLOPs and
compulsory bytes) beside it; :func:`load` returns the three for a benchmark harness.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple

# kernel name -> submodule
KERNELS: dict[str, str] = {
    "stream_read": "memory",
    "copy": "memory",
    "rmsnorm": "memory",
    "swiglu": "memory",
    "gemm": "gemm",
    "flash_attention": "attention",
    "decode_attention": "decode_attention",
    "topk_softmax": "moe",
    "unpermute": "moe",
}

# kernel name -> (reference, cost) function names, where they differ from name_ref / name_cost
_SIDE_NAMES = {
    "flash_attention": ("attention_ref", "attention_cost"),
}


class KernelEntry(NamedTuple):
    name: str
    fn: Callable[..., Any]
    ref: Callable[..., Any]
    cost: Callable[..., dict]


def load(name: str) -> KernelEntry:
    """Import the kernel's module (torch and triton needed) and return its launcher, reference and cost."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; known: {sorted(KERNELS)}")
    mod = importlib.import_module(f"{__name__}.{KERNELS[name]}")
    ref_name, cost_name = _SIDE_NAMES.get(name, (f"{name}_ref", f"{name}_cost"))
    return KernelEntry(name, getattr(mod, name), getattr(mod, ref_name), getattr(mod, cost_name))


__all__ = ["KERNELS", "KernelEntry", "load"]
