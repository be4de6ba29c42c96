"""Torch stand-ins for the decoder's Triton kernels, for the CPU tests of the multi-GPU scripts only.

Under the Triton interpreter one toy decoder step takes about a second; the multi-GPU tests check how
the work is sharded and communicated, not the kernels (``tests/validation`` checks each kernel against
its ``*_ref``). ``use()`` swaps each kernel for its reference, written into the same output buffer,
so the sharded and the whole model run the same arithmetic. Never used on a GPU.
"""

from __future__ import annotations

import torch


def _rmsnorm(x, weight, eps=1e-6, out=None, **_):
    from validation.kernels import memory as Mk

    y = Mk.rmsnorm_ref(x, weight, eps, compute_dtype=torch.float32).to(x.dtype)
    return y if out is None else out.copy_(y)


def _swiglu(gate, up, out=None, **_):
    from validation.kernels import memory as Mk

    y = Mk.swiglu_ref(gate, up, compute_dtype=torch.float32).to(gate.dtype)
    return y if out is None else out.copy_(y)


def _rotary(qkv, positions, cos, sin, n_rot_heads, head_dim):
    from validation import ops

    return qkv.copy_(ops.rotary_ref(qkv, positions, cos, sin, n_rot_heads, head_dim))


def _kv_write(k, v, k_cache, v_cache, seq_new, past):
    from validation import ops

    kc, vc = ops.kv_write_ref(k, v, k_cache, v_cache, seq_new, past)
    k_cache.copy_(kc)
    v_cache.copy_(vc)


def _topk_softmax(logits, k, out_weights=None, out_ids=None, *, renormalize=False, **_):
    from validation.kernels import moe

    w, ids = moe.topk_softmax_ref(logits, k, renormalize, compute_dtype=torch.float32)
    return w.float(), ids


def _unpermute(expert_out, weights, inverse_index, out=None, **_):
    from validation.kernels import moe

    y = moe.unpermute_ref(expert_out, weights, inverse_index, compute_dtype=torch.float32).to(expert_out.dtype)
    return y if out is None else out.copy_(y)


def use() -> None:
    """Replace the Triton kernels the decoder calls with their torch references (this process only)."""
    from validation import ops
    from validation.kernels import memory as Mk
    from validation.kernels import moe

    Mk.rmsnorm, Mk.swiglu = _rmsnorm, _swiglu
    ops.rotary_, ops.kv_write = _rotary, _kv_write
    moe.topk_softmax, moe.unpermute = _topk_softmax, _unpermute
