"""Time the kernels training adds, over the shapes the validation models ask for (one GPU).

* ``gemm_dgrad``: dX[M,K] = dY[M,N] @ W[N,K] (``nn.Linear`` weight layout), bf16, cuBLAS through torch;
* ``gemm_wgrad``: dW[N,K] = dY[M,N]ᵀ @ X[M,K];
* ``attention_backward``: the causal ``scaled_dot_product_attention`` backward (FlashAttention/cuDNN);
* ``optimizer``: ``torch.optim.AdamW(fused=True, capturable=True)`` steps over bf16 and fp32 parameter
  sets: equal chunks, and the parameter lists of the validation models (``validation.training.steps``);
* ``cross_entropy``: ``cross_entropy(logits.float())`` forward, and its backward to the bf16 logits.

Each point records the FLOPs and bytes the cost model assigns to the launch (``costmodels.backward``,
``costmodels.optimizer``, ``costmodels.loss``), so ``validation.training.fit`` fits the profile's curves
against exactly what the simulator prices. Times: ``validation.bench.time_launches`` (back-to-back
launches captured in a CUDA graph, CUDA events, median of repeats). A backward is timed as the forward
and backward together minus the forward alone, both captured: the backward engine runs each backward
kernel on its forward's stream, so a backward of a forward made outside the capture cannot be captured,
and timed eagerly it would measure the host's dispatch of the autograd graph walk, not the GPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from costmodels import backward as bwd
from costmodels.loss import cross_entropy_backward, cross_entropy_forward
from costmodels.optimizer import step_bytes_per_param
from simulator.models import get_model
from validation.bench import time_launches

# (K, N) of the validation models' projections: 1.5B (h 2048) and Llama-3.1-8B (h 4096)
LINEARS = [(2048, 4096), (2048, 2048), (2048, 16384), (8192, 2048), (2048, 32000),
           (4096, 6144), (4096, 4096), (4096, 28672), (14336, 4096), (4096, 128256)]
TOKENS = [1024, 4096, 16384]
ATTENTION = [(b, s, h, kv) for h, kv in ((16, 8), (32, 8)) for b, s in ((1, 1024), (1, 2048), (4, 2048), (1, 8192),
                                                                        (1, 16384))]
OPTIMIZER_PARAMS = [2**20, 2**23, 2**26, 2**28, 2**30]
MODEL_PARAM_LISTS = [("llama-1.5b", 2.0), ("llama-1.5b", 4.0), ("llama-3.1-8b", 2.0)]  # (model, bytes/param)
LOGITS = [(t, v) for v in (32000, 128256) for t in (1024, 4096, 16384)]


def _rand(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, device="cuda", dtype=dtype)


def gemm_points() -> list[dict[str, Any]]:
    out = []
    for k, n in LINEARS:
        for m in TOKENS:
            if m * n > 2**31 or m * k > 2**31:
                continue
            dy, w, x = _rand(m, n), _rand(n, k), _rand(m, k)
            t = time_launches([lambda: torch.matmul(dy, w)], target_s=2e-3, repeats=5).time_s
            f, b = bwd.dgrad(m, k, n, 2.0, k * n * 2.0)
            out.append({"kind": "gemm_dgrad", "M": m, "K": k, "N": n, "flops": float(f), "bytes": float(b), "time_s": t})
            t = time_launches([lambda: torch.matmul(dy.t(), x)], target_s=2e-3, repeats=5).time_s
            f, b = bwd.wgrad(m, k, n, 2.0, k * n, 2.0)
            out.append({"kind": "gemm_wgrad", "M": m, "K": k, "N": n, "flops": float(f), "bytes": float(b), "time_s": t})
            del dy, w, x
    return out


def _backward_time(forward, forward_backward) -> dict[str, Any]:
    """``time_s`` of a backward per launch (forward and backward together minus the forward, each
    graph-captured), or, where either could not be captured, no ``time_s`` (the fit skips the point)."""
    both = time_launches([forward_backward], target_s=2e-3, repeats=5)
    fwd = time_launches([forward], target_s=2e-3, repeats=5)
    if both.method != "graph" or fwd.method != "graph":
        return {"time_s": None, "error": f"not captured ({both.method}, {fwd.method})"}
    return {"time_s": both.time_s - fwd.time_s, "forward_backward_s": both.time_s, "forward_s": fwd.time_s}


def attention_points(d: int = 128) -> list[dict[str, Any]]:
    out = []
    for b, s, h, kv in ATTENTION:
        q = _rand(b, h, s, d).requires_grad_()
        k = _rand(b, kv, s, d).requires_grad_()
        v = _rand(b, kv, s, d).requires_grad_()
        do = _rand(b, h, s, d)

        def fwd():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv != h)

        timed = _backward_time(fwd, lambda: torch.autograd.grad(fwd(), (q, k, v), do))
        pairs = s * (s + 1) / 2.0
        fwd_flops = b * pairs * h * 2.0 * (d + d)
        fwd_bytes = b * s * h * 2 * d * 2.0 + b * s * 2 * kv * d * 2.0
        f, nb = bwd.flash_attention_backward(fwd_flops, fwd_bytes)
        out.append({"kind": "attention_backward", "B": b, "S": s, "H": h, "Hkv": kv, "D": d, "flops": float(f),
                    "bytes": float(nb), **timed})
        del q, k, v, do
    return out


def _optimizer_point(shapes, dtype, pb: float, label: str) -> dict[str, Any]:
    params = [torch.nn.Parameter(_rand(*shape, dtype=dtype)) for shape in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True, capturable=True)
    opt.step()
    t = time_launches([opt.step], target_s=2e-3, repeats=5).time_s
    n = sum(p.numel() for p in params)
    del params, opt
    torch.cuda.empty_cache()
    return {"kind": "optimizer", "params": n, "param_bytes": pb, "tensors": len(shapes), "param_list": label,
            "flops": 12.0 * n, "bytes": float(n * step_bytes_per_param(pb, pb, 0.0, 2 * pb)), "time_s": t}


def model_param_shapes(model_name: str) -> list[tuple[int, ...]]:
    """Shapes of the validation decoder's parameters for ``model_name`` (``validation.training.steps``)."""
    from validation.training.model import from_spec
    from validation.training.steps import MODELS

    with torch.device("meta"):
        return [tuple(p.shape) for p in from_spec(get_model(MODELS[model_name])).parameters()]


def optimizer_points() -> list[dict[str, Any]]:
    out = []
    for dtype, pb in ((torch.bfloat16, 2.0), (torch.float32, 4.0)):
        for n in OPTIMIZER_PARAMS:
            if n * pb * 4 > 40e9:
                continue
            chunks = 16 if n >= 2**20 * 16 else 1
            out.append(_optimizer_point([(n // chunks,)] * chunks, dtype, pb, f"{chunks} equal"))
    for name, pb in MODEL_PARAM_LISTS:
        out.append(_optimizer_point(model_param_shapes(name), torch.bfloat16 if pb == 2.0 else torch.float32, pb, name))
    return out


def cross_entropy_points() -> list[dict[str, Any]]:
    out = []
    for t_, v in LOGITS:
        logits = _rand(t_, v).requires_grad_()
        labels = torch.randint(0, v, (t_,), device="cuda")

        def fwd():
            return F.cross_entropy(logits.float(), labels)

        forward = {"time_s": time_launches([fwd], target_s=2e-3, repeats=5).time_s}
        backward = _backward_time(fwd, lambda: torch.autograd.grad(fwd(), logits))
        for phase, timed, (f, b) in (("forward", forward, cross_entropy_forward(t_, v, 2.0)),
                                     ("backward", backward, cross_entropy_backward(t_, v, 2.0))):
            out.append({"kind": "cross_entropy", "phase": phase, "tokens": t_, "vocab": v, "flops": float(f),
                        "bytes": float(b), **timed})
        del logits
        torch.cuda.empty_cache()
    return out


def run(log=print) -> list[dict[str, Any]]:
    points = []
    for name, fn in (("gemm", gemm_points), ("attention", attention_points), ("optimizer", optimizer_points),
                     ("cross_entropy", cross_entropy_points)):
        got = fn()
        log(f"{name}: {len(got)} points, {sum(1 for p in got if p.get('time_s'))} timed")
        points.extend(got)
    return points
